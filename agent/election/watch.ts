import type { Clock } from "../clock.js";
import type { ConsulApi, KvEntry } from "../consul/index.js";
import type { Logger } from "../observe/log.js";
import { nextWatchIndex, TokenBucket } from "./lease.js";

export interface PrefixWatchDeps {
  api: ConsulApi;
  prefix: string;
  /** Read per request: a reload may change it. */
  waitMs: () => number;
  clock: Clock;
  log: Logger;
  /** Every answer, even an unchanged one: the loop keeps only the latest and decides from it. */
  onSnapshot: (entries: readonly KvEntry[], index: number) => void;
  onError?: (err: Error) => void;
}

/** Back-off between failed watch requests while Consul is unreachable. */
const WATCH_ERROR_BACKOFF_MS = 500;

/**
 * One recursive blocking query on the cluster's routes prefix, for contention and monitoring
 * alike. Short waits (a partitioned holder must not sit in a 5-minute block), index-reset
 * rules, and a token bucket so a churning key cannot turn the loop into a busy loop.
 */
export async function runPrefixWatch(deps: PrefixWatchDeps, signal: AbortSignal): Promise<void> {
  const { api, prefix, clock, log } = deps;
  const bucket = new TokenBucket(5, 10, clock.now());
  let index = 0;
  let failing = false;
  while (!signal.aborted) {
    const wait = bucket.take(clock.now());
    if (wait > 0) await clock.sleep(wait, signal).catch(() => undefined);
    if (signal.aborted) break;
    try {
      const read = await api.kvRead(prefix, { recurse: true, index, waitMs: deps.waitMs(), signal });
      if (failing) log.info({ step: "watch", prefix }, "watch recovered: Consul answers again");
      failing = false;
      index = nextWatchIndex(index, read.index);
      deps.onSnapshot(read.entries, read.index);
    } catch (err) {
      if (signal.aborted) break;
      if (!failing) log.warn({ step: "watch", prefix, err: (err as Error).message }, "watch failed; routes held stay unwritten until Consul answers");
      failing = true;
      index = 0;
      deps.onError?.(err as Error);
      await clock.sleep(WATCH_ERROR_BACKOFF_MS, signal).catch(() => undefined);
    }
  }
}
