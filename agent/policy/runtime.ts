import type { Clock } from "../clock.js";
import type { Config, RouteConfig } from "../config/index.js";
import { blockingTimeoutMs, runBlockingWatch } from "../consul/blocking.js";
import type { ConsulApi, KvEntry, ServiceInstance, SessionInfo } from "../consul/index.js";
import type { Identity } from "../identity/index.js";
import type { Logger } from "../observe/log.js";
import { routesPrefix } from "../election/holder.js";
import { judgePeer, mayContend, nextPolicyChangeAt, shouldHandOver, updateHealthHistory, type HandoverRequest, type HealthHistory, type PolicyContext } from "./decide.js";

/**
 * How long one blocking read of peers' health (or of the sessions) waits for a change. A change
 * answers at once; the wait only bounds what a quiet cluster costs (issue #16: one request per
 * watch per 30 s instead of per 5 s).
 */
const HEALTH_WAIT_MS = 30_000;
/**
 * Judgements further apart than this break a peer's health history (see updateHealthHistory),
 * and an answer older than this is too old to judge from: the longest a blocking read may take
 * (one wait, Consul's jitter of wait/16, a margin), after which it fails and leaves a gap.
 */
const HEALTH_GAP_MS = blockingTimeoutMs(HEALTH_WAIT_MS);
/** How long an operator's handover request binds the cluster. */
export const HANDOVER_REQUEST_TTL_MS = 30_000;

export function failbackKey(cluster: string, route: string): string {
  return `${routesPrefix(cluster)}${route}/failback`;
}

export function handoverKey(cluster: string, route: string): string {
  return `${routesPrefix(cluster)}${route}/handover`;
}

/** Parses a handover request value leniently; undefined for anything malformed. */
export function parseHandover(value: string | null): HandoverRequest | undefined {
  if (!value) return undefined;
  try {
    const raw = JSON.parse(value) as Record<string, unknown>;
    if (typeof raw.until !== "number") return undefined;
    return { until: raw.until, ...(typeof raw.to === "string" ? { to: raw.to } : {}), ...(typeof raw.from === "string" ? { from: raw.from } : {}) };
  } catch {
    return undefined;
  }
}

export interface FailoverPolicyDeps {
  api: ConsulApi;
  config: Config;
  identity: Identity;
  clock: Clock;
  log: Logger;
  /** Each route's preferred AZ (resolved from 'auto', 'none' or a name). */
  preferredAz: ReadonlyMap<string, string | undefined>;
}

/**
 * Holds what the policy decisions need (peers' health history, failback markers, handover
 * requests) and answers the election's two questions: may this node contend for a route,
 * and should the holder hand it over.
 */
export class FailoverPolicy {
  private readonly history = new Map<string, HealthHistory>();
  private readonly lastFailbackAt = new Map<string, number>();
  private readonly handovers = new Map<string, HandoverRequest>();
  private readonly verdicts = new Map<string, string>();
  private readonly judged = new Map<string, string>();
  private readonly changeListeners: (() => void)[] = [];
  private healthKnown = false;

  constructor(private readonly deps: FailoverPolicyDeps) {}

  /** A reload: routes, timers (standbyDelay, failbackAfter, holdDown) apply from the next decision. */
  reconfigure(config: Config): void {
    this.deps.config = config;
  }

  /** Reads failback markers and handover requests from the routes-prefix watch. */
  observe(entries: readonly KvEntry[]): void {
    const { cluster } = this.deps.config;
    this.handovers.clear();
    for (const route of this.deps.config.routes) {
      const failback = entries.find((e) => e.key === failbackKey(cluster, route.name));
      if (failback?.value && Number.isFinite(Number(failback.value))) this.lastFailbackAt.set(route.name, Number(failback.value));
      const handover = parseHandover(entries.find((e) => e.key === handoverKey(cluster, route.name))?.value ?? null);
      if (handover) this.handovers.set(route.name, handover);
    }
  }

  private context(route: RouteConfig, now: number, freeSince?: number): PolicyContext {
    const { config, identity, clock } = this.deps;
    return {
      myInstanceId: identity.instanceId,
      myAz: identity.az,
      preferredAz: this.deps.preferredAz.get(route.name),
      history: this.history.get(route.name) ?? new Map(),
      now,
      wallNow: clock.wallNow(),
      standbyDelayMs: config.policy.standbyDelay,
      failbackAfterMs: config.policy.failbackAfter,
      holdDownMs: config.policy.holdDown,
      ...(freeSince !== undefined ? { freeSince } : {}),
      ...(this.lastFailbackAt.has(route.name) ? { lastFailbackAt: this.lastFailbackAt.get(route.name) as number } : {}),
      ...(this.handovers.has(route.name) ? { handover: this.handovers.get(route.name) as HandoverRequest } : {}),
    };
  }

  mayContend(route: RouteConfig, ctx: { now: number; freeSince?: number }): boolean {
    // Until peers' health is known, a node outside the preferred AZ cannot tell: it waits.
    if (!this.healthKnown && this.deps.preferredAz.get(route.name) && this.deps.preferredAz.get(route.name) !== this.deps.identity.az) return false;
    const verdict = mayContend(this.context(route, ctx.now, ctx.freeSince));
    if (this.verdicts.get(route.name) !== verdict.reason) {
      this.verdicts.set(route.name, verdict.reason);
      this.deps.log.info({ route: route.name, contend: verdict.contend, reason: verdict.reason, preferredAz: this.deps.preferredAz.get(route.name) ?? null }, `${route.name}: ${verdict.contend ? "contending" : "standing by"} (${verdict.reason})`);
    }
    return verdict.contend;
  }

  /** When this route's verdicts could next change with time alone (monotonic), if ever. */
  nextChangeAt(route: RouteConfig, ctx: { now: number; freeSince?: number }): number | undefined {
    return nextPolicyChangeAt(this.context(route, ctx.now, ctx.freeSince));
  }

  /** Called after every new judgement of peers' health (the election re-decides at once). */
  onChange(listener: () => void): void {
    this.changeListeners.push(listener);
  }

  /** Instances Consul shows able to serve the route now (this one included); undefined until peers' health is known. */
  healthyFor(routeName: string): string[] | undefined {
    if (!this.healthKnown) return undefined;
    return [...(this.history.get(routeName) ?? new Map()).entries()].filter(([, h]) => h.healthySince !== undefined).map(([id]) => id);
  }

  handOver(route: RouteConfig, now: number): "failback" | "handover" | undefined {
    if (!this.healthKnown) return undefined;
    const decision = shouldHandOver(this.context(route, now));
    return decision.handOver ? decision.reason : undefined;
  }

  /** Records a voluntary failback in Consul, so the hold-down binds whoever holds next. */
  async handedOver(route: RouteConfig, reason: "failback" | "handover"): Promise<void> {
    const { api, config, clock, log } = this.deps;
    if (reason === "failback") {
      const at = clock.wallNow();
      this.lastFailbackAt.set(route.name, at);
      await api.kvPut(failbackKey(config.cluster, route.name), String(at)).catch((err: Error) => log.warn({ route: route.name, err: err.message }, "could not record failback time"));
    }
  }

  /**
   * Watches peers' health until the signal aborts: two Consul blocking queries, the health API
   * for the routeleader service (service checks and each node's serfHealth) and the list of
   * live sessions. A change answers at once; a quiet cluster costs one request per watch per
   * HEALTH_WAIT_MS (polling both every second was most of an idle agent's CPU, issue #16).
   * See `judgePeer` for what counts as healthy.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { api, clock, log } = this.deps;
    let instances: { value: readonly ServiceInstance[]; at: number } | undefined;
    let sessions: { value: readonly SessionInfo[]; at: number } | undefined;
    // A blocking answer stands until the next one; a watch that stopped answering (Consul
    // unreachable) leaves a gap, and the histories break instead of aging on old data.
    const judgeBoth = () => {
      const now = clock.now();
      if (instances && sessions && now - Math.min(instances.at, sessions.at) <= HEALTH_GAP_MS) this.judge(instances.value, sessions.value, now);
    };
    const onError = (err: Error) => log.debug({ err: err.message }, "peer health unavailable");
    await Promise.all([
      runBlockingWatch(
        {
          clock,
          // Read per request: a reload may change the service name's routes and checks.
          read: (index, readSignal) => api.watchHealthService(this.deps.config.consul.serviceName, index, HEALTH_WAIT_MS, readSignal),
          onAnswer: (value) => ((instances = { value, at: clock.now() }), judgeBoth()),
          onError,
        },
        signal,
      ),
      runBlockingWatch(
        {
          clock,
          read: (index, readSignal) => api.watchSessions(index, HEALTH_WAIT_MS, readSignal),
          onAnswer: (value) => ((sessions = { value, at: clock.now() }), judgeBoth()),
          onError,
        },
        signal,
      ),
    ]);
  }

  /** Updates every route's peer-health history from one view of the service and the sessions. */
  private judge(instances: readonly ServiceInstance[], sessions: readonly SessionInfo[], now: number): void {
    const { config, log } = this.deps;
    const sessionsByNode = new Map<string, { id: string; checks: readonly string[] }[]>();
    for (const s of sessions) sessionsByNode.set(s.node, [...(sessionsByNode.get(s.node) ?? []), { id: s.id, checks: s.serviceChecks }]);
    const views = instances
      .filter((i) => i.meta.cluster === config.cluster && i.meta.instanceId)
      .map((i) => ({
        serviceId: i.serviceId,
        view: { instanceId: i.meta.instanceId as string, az: i.meta.az ?? "", checks: Object.fromEntries(i.checks.map((c) => [c.id, c.status])), sessions: sessionsByNode.get(i.node) ?? [] },
      }));
    for (const route of config.routes) {
      const peers = views.map(({ serviceId, view }) => judgePeer(view, [`${serviceId}:liveness`, ...route.checks.map((c) => `${serviceId}:check:${c}`)]));
      for (const p of peers) {
        const key = `${route.name}|${p.instanceId}`;
        const verdict = p.healthy ? "healthy" : (p.reason as string);
        if (this.judged.get(key) !== verdict) log.debug({ route: route.name, peer: p.instanceId, az: p.az, healthy: p.healthy, reason: p.reason ?? null }, `${route.name}: peer ${p.instanceId} ${p.healthy ? "healthy" : `not healthy (${p.reason})`}`);
        this.judged.set(key, verdict);
      }
      this.history.set(route.name, updateHealthHistory(this.history.get(route.name) ?? new Map(), peers, now, HEALTH_GAP_MS));
    }
    this.healthKnown = true;
    for (const listener of this.changeListeners) listener();
  }
}
