import type { Config, RouteConfig } from "../config/index.js";

/**
 * The fallback writer's rule (issue #17): a route with a `fallback` is contended by every
 * agent a second time, under a session bound to its liveness check only, by an election whose
 * writes point the route at the fallback target instead of the instance. The same Consul lock
 * keeps one writer at a time: a node that holds the key for the fallback is just another holder.
 * Pure: no clock, no I/O.
 */

export interface FallbackView {
  readonly now: number;
  /** When the route's key was first seen free (no session), while it is free. */
  readonly freeSince?: number;
  readonly fallbackAfterMs: number;
  /** Peers' health has been read from Consul at least once. */
  readonly healthKnown: boolean;
  /** Instances Consul shows able to serve the route now (any AZ, this one included): see judgePeer. */
  readonly healthyCandidates: readonly string[];
}

/** May the fallback writer contend for the key now? Only when it has been free for fallbackAfter and nobody could take it. */
export function fallbackMayTake(v: FallbackView): { take: boolean; reason: string } {
  if (!v.healthKnown) return { take: false, reason: "peers' health not known yet" };
  if (v.healthyCandidates.length > 0) return { take: false, reason: `${v.healthyCandidates.join(", ")} is healthy: it takes the route` };
  if (v.freeSince === undefined) return { take: false, reason: "the key is held" };
  const freeMs = Math.round(v.now - v.freeSince);
  if (freeMs < v.fallbackAfterMs) return { take: false, reason: `free for ${freeMs} ms of ${v.fallbackAfterMs}` };
  return { take: true, reason: `no healthy candidate for ${freeMs} ms (fallbackAfter ${v.fallbackAfterMs} ms)` };
}

/**
 * Should the fallback writer holding the key release it? As soon as Consul shows a candidate
 * able to serve it: that node passed its checks `rise` times and made a session bound to them
 * (the usual hysteresis), and a release carries no lock-delay, so it acquires at once.
 */
export function fallbackShouldYield(v: FallbackView): { yield: boolean; reason: string } {
  if (!v.healthKnown || v.healthyCandidates.length === 0) return { yield: false, reason: "no healthy candidate" };
  return { yield: true, reason: `${v.healthyCandidates.join(", ")} is healthy` };
}

/**
 * The routes the fallback writer contends for: those with a fallback, bound to no check (its
 * session binds liveness and serfHealth only), never deleted on release (a route at the
 * fallback stays there until a holder rewrites it), and without the EIP (that follows holders).
 */
export function fallbackRoutes(config: Pick<Config, "routes">): RouteConfig[] {
  return config.routes
    .filter((r) => r.fallback)
    .map((r) => {
      const { eip: _eip, ...rest } = r;
      return { ...rest, checks: [], onRelease: "keep" as const };
    });
}
