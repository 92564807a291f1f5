/**
 * Failover policy as pure functions of (state, now): AZ preference, standby delay, failback
 * with hold-downs, operator handover requests. Times are milliseconds: `now` and
 * `healthySince` on the local monotonic clock; `lastFailbackAt` and handover `until` are wall
 * clock, because they are shared between nodes through Consul (EC2 instances keep NTP time).
 */

/** One peer's health for one route, as judged by `judgePeer`. */
export interface PeerRouteHealth {
  readonly instanceId: string;
  readonly az: string;
  /** Could serve the route now: see `judgePeer`. */
  readonly healthy: boolean;
  /** Why not, when not healthy. */
  readonly reason?: string;
  /** The live session that made it healthy: a new one means the peer restarted. */
  readonly session?: string;
}

/** What Consul shows of one peer instance: one health-API entry plus its node's live sessions. */
export interface PeerView {
  readonly instanceId: string;
  readonly az: string;
  /** Status of every check Consul lists with the instance, by check id: its service's checks and its node's (serfHealth). */
  readonly checks: Readonly<Record<string, string>>;
  /** Each live session of the peer's Consul node, with the service-check ids it is bound to. */
  readonly sessions: readonly { readonly id: string; readonly checks: readonly string[] }[];
}

/** Consul's node check that turns critical when gossip finds the node dead. */
export const SERF_HEALTH = "serfHealth";

/**
 * Could this peer serve a route that needs the service checks `required` (its liveness check
 * and the route's checks, as Consul check ids)? Only when all of them pass, its node's
 * serfHealth passes, and its node has a live session bound to them.
 *
 * Service checks alone are not enough: they are TTL checks kept by the peer's own Consul
 * agent, so when the whole node dies (power-off, SIGKILL of the agent and its Consul agent)
 * the servers keep showing their last status, "passing", for good. serfHealth is what the
 * servers themselves learn from gossip, and the session is what the peer would need to hold
 * the route at all (Consul invalidates it when a bound check fails). A standby that counted
 * such a peer would wait standbyDelay for nothing and hand the route back ("failback") to a
 * dead node (issue #14, scenario 4).
 */
export function judgePeer(peer: PeerView, required: readonly string[]): PeerRouteHealth {
  const base = { instanceId: peer.instanceId, az: peer.az };
  const serf = peer.checks[SERF_HEALTH];
  if (serf !== "passing") return { ...base, healthy: false, reason: `node ${SERF_HEALTH} ${serf ?? "missing"}` };
  const failing = required.find((id) => peer.checks[id] !== "passing");
  if (failing !== undefined) return { ...base, healthy: false, reason: `check ${failing} ${peer.checks[failing] ?? "missing"}` };
  const session = peer.sessions.find((s) => required.every((id) => s.checks.includes(id)));
  if (!session) return { ...base, healthy: false, reason: "no live session bound to its checks" };
  return { ...base, healthy: true, session: session.id };
}

/**
 * Per instance: its AZ, since when it has been healthy without a break (undefined: not
 * healthy), under which session, and when it was last seen.
 */
export type HealthHistory = ReadonlyMap<string, { readonly az: string; readonly healthySince?: number; readonly session?: string; readonly seenAt?: number }>;

/**
 * Folds a new health observation into the history. A break resets `healthySince`: an
 * unhealthy poll, a new session (the peer restarted between two polls, e.g. a power cycle
 * faster than the poll), or polls further apart than `maxGapMs` (polls failed meanwhile, so a
 * restart may hide in the gap; seen in the soak as a failback 0.6 s after acquiring).
 */
export function updateHealthHistory(previous: HealthHistory, peers: readonly PeerRouteHealth[], now: number, maxGapMs = Number.POSITIVE_INFINITY): HealthHistory {
  const next = new Map<string, { az: string; healthySince?: number; session?: string; seenAt: number }>();
  for (const peer of peers) {
    const before = previous.get(peer.instanceId);
    if (!peer.healthy) {
      next.set(peer.instanceId, { az: peer.az, seenAt: now });
      continue;
    }
    const unbroken = before?.healthySince !== undefined && before.session === peer.session && now - (before.seenAt ?? now) <= maxGapMs;
    next.set(peer.instanceId, { az: peer.az, healthySince: unbroken ? before.healthySince : now, ...(peer.session ? { session: peer.session } : {}), seenAt: now });
  }
  return next;
}

/** An operator's request that a route move (to one instance, or just away from its holder). */
export interface HandoverRequest {
  readonly to?: string;
  readonly from?: string;
  /** Wall-clock ms after which the request no longer binds anyone. */
  readonly until: number;
}

export interface PolicyContext {
  readonly myInstanceId: string;
  readonly myAz: string;
  /** The route's preferred AZ; undefined when it has none. */
  readonly preferredAz: string | undefined;
  readonly history: HealthHistory;
  /** Monotonic now. */
  readonly now: number;
  /** Wall-clock now. */
  readonly wallNow: number;
  readonly standbyDelayMs: number;
  readonly failbackAfterMs: number;
  readonly holdDownMs: number;
  /** When the key was seen free (monotonic), while it is free. */
  readonly freeSince?: number;
  /** Wall-clock time of the route's last voluntary failback (from Consul). */
  readonly lastFailbackAt?: number;
  readonly handover?: HandoverRequest;
}

function activeHandover(ctx: PolicyContext): HandoverRequest | undefined {
  return ctx.handover && ctx.wallNow < ctx.handover.until ? ctx.handover : undefined;
}

/** A healthy node in the preferred AZ other than this one. */
function preferredPeerHealthy(ctx: PolicyContext, minHealthyMs = 0): boolean {
  for (const [instanceId, h] of ctx.history) {
    if (instanceId === ctx.myInstanceId || h.az !== ctx.preferredAz || h.healthySince === undefined) continue;
    if (ctx.now - h.healthySince >= minHealthyMs) return true;
  }
  return false;
}

export type ContendVerdict = { contend: true; reason: string } | { contend: false; reason: string };

/**
 * May this node try to acquire the route now? A node outside the preferred AZ waits while a
 * preferred-AZ node is healthy, until the key has been free for `standbyDelay`. An operator's
 * handover request binds everyone until it expires.
 */
export function mayContend(ctx: PolicyContext): ContendVerdict {
  const handover = activeHandover(ctx);
  if (handover?.to) return handover.to === ctx.myInstanceId ? { contend: true, reason: "handover target" } : { contend: false, reason: `handover to ${handover.to}` };
  if (handover?.from === ctx.myInstanceId) return { contend: false, reason: "handed over by operator" };
  if (!ctx.preferredAz || ctx.preferredAz === ctx.myAz) return { contend: true, reason: ctx.preferredAz ? "in preferred AZ" : "no AZ preference" };
  if (!preferredPeerHealthy(ctx)) return { contend: true, reason: `no healthy node in ${ctx.preferredAz}` };
  if (ctx.freeSince !== undefined && ctx.now - ctx.freeSince >= ctx.standbyDelayMs) return { contend: true, reason: `free for standbyDelay (${ctx.standbyDelayMs} ms)` };
  return { contend: false, reason: `standby: ${ctx.preferredAz} has a healthy node` };
}

/**
 * Should this holder hand the route back (release, no lock-delay)? Only a holder outside the
 * preferred AZ, only when a preferred-AZ node has been healthy without a break for
 * `failbackAfter`, and never twice within `holdDown` (alterNAT#90: no flapping).
 */
export function shouldHandOver(ctx: PolicyContext): { handOver: true; reason: "failback" | "handover" } | { handOver: false } {
  const handover = activeHandover(ctx);
  if (handover?.to === ctx.myInstanceId) return { handOver: false };
  if (handover && (handover.from === ctx.myInstanceId || (handover.to && handover.to !== ctx.myInstanceId))) return { handOver: true, reason: "handover" };
  if (!ctx.preferredAz || ctx.preferredAz === ctx.myAz) return { handOver: false };
  if (ctx.lastFailbackAt !== undefined && ctx.wallNow - ctx.lastFailbackAt < ctx.holdDownMs) return { handOver: false };
  return preferredPeerHealthy(ctx, ctx.failbackAfterMs) ? { handOver: true, reason: "failback" } : { handOver: false };
}

/**
 * The earliest monotonic time after `now` at which mayContend or shouldHandOver could change
 * with no new information (the standby delay ends, a peer's failbackAfter is reached, a
 * hold-down or an operator's request expires); undefined when none is pending. The election
 * sleeps until then instead of re-deciding every route on a short timer.
 */
export function nextPolicyChangeAt(ctx: PolicyContext): number | undefined {
  const { now } = ctx;
  const fromWall = (wall: number) => now + (wall - ctx.wallNow);
  const times: number[] = [];
  if (ctx.handover) times.push(fromWall(ctx.handover.until));
  if (ctx.lastFailbackAt !== undefined) times.push(fromWall(ctx.lastFailbackAt + ctx.holdDownMs));
  if (ctx.freeSince !== undefined) times.push(ctx.freeSince + ctx.standbyDelayMs);
  for (const [instanceId, h] of ctx.history) if (instanceId !== ctx.myInstanceId && h.az === ctx.preferredAz && h.healthySince !== undefined) times.push(h.healthySince + ctx.failbackAfterMs);
  const future = times.filter((t) => t > now);
  return future.length ? Math.min(...future) : undefined;
}

