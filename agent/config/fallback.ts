import type { RouteConfig } from "./schema.js";

/** Added to the failover bound when a route with a fallback does not set fallbackAfter. */
export const FALLBACK_MARGIN_MS = 5000;

/** The timings the failover bound is made of (a resolved Config has them all). */
export interface FailoverTimings {
  readonly election: { readonly livenessTtl: number; readonly sessionTtl: number; readonly lockDelay: number };
  readonly aws: { readonly writeTimeout: number };
}

/**
 * The longest a dead holder keeps a route from a healthy peer: the holder's session outlives it
 * by at most its liveness TTL (agent dead) or session TTL (node gone and gossip slow), then the
 * lock-delay, then the new holder's write.
 */
export function failoverBoundMs(cfg: FailoverTimings): number {
  return Math.max(cfg.election.livenessTtl, cfg.election.sessionTtl) + cfg.election.lockDelay + cfg.aws.writeTimeout;
}

/** How long a route may be without a healthy holder before it points at its fallback. */
export function fallbackAfterMs(route: Pick<RouteConfig, "fallbackAfter">, cfg: FailoverTimings): number {
  return route.fallbackAfter ?? failoverBoundMs(cfg) + FALLBACK_MARGIN_MS;
}

/** The fallback target's id (nat-… or eni-…), or undefined. */
export function fallbackTargetId(route: Pick<RouteConfig, "fallback">): string | undefined {
  if (!route.fallback) return undefined;
  return "natGateway" in route.fallback ? route.fallback.natGateway : route.fallback.networkInterface;
}
