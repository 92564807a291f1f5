import type { Clock } from "../clock.js";
import type { Config, RouteConfig } from "../config/index.js";
import type { ConsulApi, KvEntry } from "../consul/index.js";
import type { Identity } from "../identity/index.js";
import type { Logger } from "../observe/log.js";
import { routesPrefix } from "../election/holder.js";
import { judgePeer, mayContend, shouldHandOver, updateHealthHistory, type HandoverRequest, type HealthHistory, type PolicyContext } from "./decide.js";

/** How often peers' health is read from Consul's health API. */
const HEALTH_POLL_MS = 1000;
/** Successful polls further apart than this break a peer's health history (see updateHealthHistory). */
const HEALTH_GAP_MS = 4000;
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
   * Polls peers' health until the signal aborts: two requests per poll, Consul's health API
   * for the routeleader service (service checks and each node's serfHealth) and the list of
   * live sessions. See `judgePeer` for what counts as healthy.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { api, clock, log } = this.deps;
    const judged = new Map<string, string>();
    while (!signal.aborted) {
      // Read per poll: a reload may change the routes and their checks.
      const config = this.deps.config;
      try {
        const [instances, sessions] = await Promise.all([api.healthService(config.consul.serviceName, { timeoutMs: 2000 }), api.listSessions(2000)]);
        const now = clock.now();
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
            if (judged.get(key) !== verdict) log.debug({ route: route.name, peer: p.instanceId, az: p.az, healthy: p.healthy, reason: p.reason ?? null }, `${route.name}: peer ${p.instanceId} ${p.healthy ? "healthy" : `not healthy (${p.reason})`}`);
            judged.set(key, verdict);
          }
          this.history.set(route.name, updateHealthHistory(this.history.get(route.name) ?? new Map(), peers, now, HEALTH_GAP_MS));
        }
        this.healthKnown = true;
      } catch (err) {
        log.debug({ err: (err as Error).message }, "peer health unavailable");
      }
      await clock.sleep(HEALTH_POLL_MS, signal).catch(() => undefined);
    }
  }
}
