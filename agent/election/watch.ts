import type { Clock } from "../clock.js";
import { runBlockingWatch } from "../consul/blocking.js";
import type { ConsulApi, KvEntry } from "../consul/index.js";
import type { Logger } from "../observe/log.js";

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

/**
 * One recursive blocking query on the cluster's routes prefix, for contention and monitoring
 * alike. Short waits (a partitioned holder must not sit in a 5-minute block); the index rules
 * and the rate limit are runBlockingWatch's.
 */
export function runPrefixWatch(deps: PrefixWatchDeps, signal: AbortSignal): Promise<void> {
  const { api, prefix, clock, log } = deps;
  return runBlockingWatch<readonly KvEntry[]>(
    {
      clock,
      read: async (index, readSignal) => {
        const read = await api.kvRead(prefix, { recurse: true, index, waitMs: deps.waitMs(), signal: readSignal });
        return { value: read.entries, index: read.index };
      },
      onAnswer: (entries, index) => deps.onSnapshot(entries, index),
      onRecovered: () => log.info({ step: "watch", prefix }, "watch recovered: Consul answers again"),
      onError: (err, first) => {
        if (first) log.warn({ step: "watch", prefix, err: err.message }, "watch failed; routes held stay unwritten until Consul answers");
        deps.onError?.(err);
      },
    },
    signal,
  );
}
