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
