import type { Clock } from "../clock.js";
import type { Config, RouteConfig } from "../config/index.js";
import type { ConsulApi } from "../consul/index.js";
import type { Identity } from "../identity/index.js";
import type { Logger } from "../observe/log.js";
import { VERSION } from "../version.js";
import { leaseDeadline } from "./lease.js";
import { SessionKeeper } from "./session-keeper.js";

export function livenessCheckId(serviceId: string): string {
  return `${serviceId}:liveness`;
}

/** The distinct check sets of the routes: one session per set. */
export function checkSetKey(checks: readonly string[]): string {
  return [...checks].sort().join(",") || "-";
}

export interface SessionsDeps {
  api: ConsulApi;
  config: Config;
  identity: Identity;
  clock: Clock;
  log: Logger;
  serviceId: string;
  checkId: (checkName: string) => string;
  /** Called when a session appears or goes. */
  onChange: () => void;
  /** Consul refused a session because this node's serfHealth is critical (after a partition). */
  onNodeFailed?: (reason: string) => void;
  /** What the node holds and why it holds nothing, for the liveness check's output. */
  summary: () => string;
  /**
   * Another Sessions keeps the liveness heartbeat (the fallback writer's sessions): this one
   * neither passes nor fails the check, and reads when it last passed from here.
   */
  sharedLiveness?: () => number;
}

/**
 * The only owner of this node's Consul sessions (one per check set) and of the liveness
 * heartbeat they are bound to: the two facts the local lease is computed from.
 */
export class Sessions {
  private readonly keepers = new Map<string, SessionKeeper>();
  private lastLivenessPassAt = 0;
  /** The configuration in force (a reload replaces it; sessions alive keep the values they were made with). */
  private config: Config;
  private signal: AbortSignal | undefined;
  private readonly stops = new Map<SessionKeeper, AbortController>();
  /** Keepers of check sets no route uses any more, until their session is destroyed. */
  private readonly closing = new Set<SessionKeeper>();

  constructor(private readonly deps: SessionsDeps) {
    this.config = deps.config;
    this.ensureKeepers(deps.config.routes);
  }

  /**
   * A reload: check sets new to the routes get a keeper (started at once when running), made
   * with the new timers; keepers alive keep theirs until their session ends. Returns the new
   * keepers' loops for the caller to track.
   */
  reconfigure(config: Config, routes: readonly RouteConfig[]): Promise<void>[] {
    this.config = config;
    const added = this.ensureKeepers(routes);
    return this.signal ? added.map((k) => this.start(k, this.signal as AbortSignal)) : [];
  }

  /**
   * Retires the keepers of check sets no route uses, once no key is held with their session
   * (destroying a session imposes lock-delay on keys it still holds).
   */
  prune(inUse: ReadonlySet<string>, heldSessions: ReadonlySet<string>): void {
    for (const [setKey, keeper] of this.keepers) {
      if (inUse.has(setKey) || (keeper.current && heldSessions.has(keeper.current))) continue;
      this.keepers.delete(setKey);
      this.closing.add(keeper);
      this.stops.get(keeper)?.abort();
      this.stops.delete(keeper);
      this.deps.log.info({ step: "session", name: keeper.name, session: keeper.current ?? null }, "check set no longer used: its session is destroyed");
      void keeper.destroy().finally(() => {
        this.closing.delete(keeper);
        this.deps.onChange();
      });
    }
  }

  /** Whether a session of this node (alive or being destroyed) is bound to any of these checks. */
  binds(checkIds: readonly string[]): boolean {
    return [...this.keepers.values(), ...this.closing].some((k) => k.serviceChecks.some((c) => checkIds.includes(c)));
  }

  private ensureKeepers(routes: readonly RouteConfig[]): SessionKeeper[] {
    const { serviceId } = this.deps;
    const config = this.config;
    const deps = this.deps;
    const added: SessionKeeper[] = [];
    for (const route of routes) {
      const setKey = checkSetKey(route.checks);
      if (this.keepers.has(setKey)) continue;
      const serviceChecks = [livenessCheckId(serviceId), ...[...route.checks].sort().map((c) => deps.checkId(c))];
      this.keepers.set(
        setKey,
        new SessionKeeper({
          api: deps.api,
          clock: deps.clock,
          log: deps.log,
          spec: {
            name: `routeleader ${config.cluster} ${deps.identity.instanceId} [${setKey}]`,
            ttlMs: config.election.sessionTtl,
            lockDelayMs: config.election.lockDelay,
            behavior: "release",
            nodeChecks: config.election.nodeChecks,
            serviceChecks,
          },
          onChange: () => deps.onChange(),
          ...(deps.onNodeFailed ? { onNodeFailed: deps.onNodeFailed } : {}),
        }),
      );
      added.push(this.keepers.get(setKey) as SessionKeeper);
    }
    return added;
  }

  private start(keeper: SessionKeeper, signal: AbortSignal): Promise<void> {
    const stop = new AbortController();
    this.stops.set(keeper, stop);
    return keeper.run(AbortSignal.any([signal, stop.signal]));
  }

  /** The live session of the route's check set, if any. */
  sessionFor(route: RouteConfig): string | undefined {
    return this.keepers.get(checkSetKey(route.checks))?.current;
  }

  /** Why the route cannot be taken for want of a session (see SessionKeeper.noSessionReason), if so. */
  noSessionReason(route: RouteConfig): string | undefined {
    return this.keepers.get(checkSetKey(route.checks))?.noSessionReason;
  }

  all(): string[] {
    return [...this.keepers.values()].map((k) => k.current).filter((s): s is string => !!s);
  }

  /** The local lease deadline (monotonic ms): no write starts after it. */
  leaseDeadline(session: string): number {
    const keeper = [...this.keepers.values()].find((k) => k.current === session);
    const { livenessTtl, fenceMargin } = this.config.election;
    // The session's own TTL: a reload changes only sessions made after it.
    return leaseDeadline({ lastRenewAt: keeper?.lastRenewAt ?? 0, sessionTtlMs: keeper?.ttlMs ?? this.config.election.sessionTtl, lastLivenessPassAt: this.livenessPassedAt(), livenessTtlMs: livenessTtl, marginMs: fenceMargin });
  }

  /** When the liveness check last passed (monotonic ms, when the request was sent). */
  livenessPassedAt(): number {
    return this.deps.sharedLiveness ? this.deps.sharedLiveness() : this.lastLivenessPassAt;
  }

  /** An acquire found the session gone: its keeper recreates it. */
  invalidate(session: string): void {
    for (const keeper of this.keepers.values()) keeper.invalidate(session);
  }

  /** Passes liveness once (sessions bind it: it must pass before one can be created). */
  async passLiveness(): Promise<void> {
    if (this.deps.sharedLiveness) return;
    const started = this.deps.clock.now();
    await this.deps.api.updateTtlCheck(livenessCheckId(this.deps.serviceId), "passing", `routeleader ${VERSION} alive; ${this.deps.summary()}`, 1000);
    this.lastLivenessPassAt = started;
  }

  /** The heartbeat and every keeper, until the signal aborts. */
  run(signal: AbortSignal): Promise<void>[] {
    this.signal = signal;
    const keepers = [...this.keepers.values()].map((k) => this.start(k, signal));
    return this.deps.sharedLiveness ? keepers : [this.livenessLoop(signal), ...keepers];
  }

  /** Fails liveness and destroys every session: call only after the keys were released. */
  async close(): Promise<void> {
    if (!this.deps.sharedLiveness) await this.deps.api.updateTtlCheck(livenessCheckId(this.deps.serviceId), "critical", "routeleader stopping").catch(() => undefined);
    await Promise.all([...this.keepers.values(), ...this.closing].map((k) => k.destroy()));
  }

  private async livenessLoop(signal: AbortSignal): Promise<void> {
    const interval = this.config.election.livenessTtl / 3;
    while (!signal.aborted) {
      await this.deps.clock.sleep(interval, signal).catch(() => undefined);
      if (signal.aborted) break;
      await this.passLiveness().catch((err: Error) => this.deps.log.warn({ step: "liveness", err: err.message }, "liveness heartbeat failed"));
    }
  }
}
