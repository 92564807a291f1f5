/**
 * The local lease: no route write may start after this time. It is the earlier of
 * (last successful session renew + session TTL) and (last liveness pass + liveness TTL),
 * less a margin. Consul invalidates a session no earlier than TTL after the last renew it
 * processed (its timer runs 2 × TTL), so a holder that stops here stops before anyone else
 * can be granted the key, plus lock-delay.
 */
export function leaseDeadline(p: { lastRenewAt: number; sessionTtlMs: number; lastLivenessPassAt: number; livenessTtlMs: number; marginMs: number }): number {
  return Math.min(p.lastRenewAt + p.sessionTtlMs, p.lastLivenessPassAt + p.livenessTtlMs) - p.marginMs;
}

/**
 * Blocking-query index rules (Consul "blocking queries"): an index that goes backwards
 * (snapshot restore, deletion of the highest key) resets to 0; an index below 1 is never
 * sent back as-is.
 */
export function nextWatchIndex(previous: number, returned: number): number {
  if (returned < previous) return 0;
  return Math.max(returned, 1);
}

/** A token bucket that rate-limits a loop without sleeping when it is not needed. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly capacity: number,
    private readonly refillPerSecond: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.last = now;
  }

  /** Takes a token; returns how long to wait first (0 when one is available). */
  take(now: number): number {
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) / 1000) * this.refillPerSecond);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    const wait = ((1 - this.tokens) / this.refillPerSecond) * 1000;
    this.tokens -= 1;
    return Math.ceil(wait);
  }
}
