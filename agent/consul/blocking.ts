import type { Clock } from "../clock.js";

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

export interface BlockingWatchDeps<T> {
  /** One read: with index 0 an immediate answer, else a blocking query from that index. */
  read: (index: number, signal: AbortSignal) => Promise<{ value: T; index: number }>;
  clock: Clock;
  /** Every answer, changed or not (a blocking query that times out answers the same index). */
  onAnswer: (value: T, index: number) => void;
  /** A failed read; `first` is true for the first failure after an answer. */
  onError?: (err: Error, first: boolean) => void;
  /** The first answer after failures. */
  onRecovered?: () => void;
}

/** Pause after a failed read while Consul is unreachable. */
const ERROR_BACKOFF_MS = 500;

/** HTTP timeout of a blocking read: the wait, the jitter Consul adds to it (wait/16) and a margin. */
export function blockingTimeoutMs(waitMs: number): number {
  return waitMs + Math.ceil(waitMs / 16) + 2000;
}

/**
 * The loop around a Consul blocking query: index-reset rules, a back-off after failures, and
 * a token bucket so an index that changes all the time cannot turn it into a busy loop.
 */
export async function runBlockingWatch<T>(deps: BlockingWatchDeps<T>, signal: AbortSignal): Promise<void> {
  const { clock } = deps;
  const bucket = new TokenBucket(5, 10, clock.now());
  let index = 0;
  let failing = false;
  while (!signal.aborted) {
    const wait = bucket.take(clock.now());
    if (wait > 0) await clock.sleep(wait, signal).catch(() => undefined);
    if (signal.aborted) break;
    try {
      const answer = await deps.read(index, signal);
      if (failing) deps.onRecovered?.();
      failing = false;
      index = nextWatchIndex(index, answer.index);
      deps.onAnswer(answer.value, answer.index);
    } catch (err) {
      if (signal.aborted) break;
      deps.onError?.(err as Error, !failing);
      failing = true;
      index = 0;
      await clock.sleep(ERROR_BACKOFF_MS, signal).catch(() => undefined);
    }
  }
}
