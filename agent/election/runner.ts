import type { Clock } from "../clock.js";
import type { Config, RouteConfig } from "../config/index.js";
import { SessionNotFoundError, type ConsulApi, type KvEntry } from "../consul/index.js";
import type { Identity } from "../identity/index.js";
import type { Logger } from "../observe/log.js";
import { VERSION } from "../version.js";
import type { ElectionEvent, ElectionListener, HolderInfo, ReleaseReason } from "./events.js";
import { encodeHolder, parseHolder, routeKey, routeOfKey, routesPrefix } from "./holder.js";
import { leaseDeadline } from "./lease.js";
import { initialState, nextWake, step, type ElectionCommand, type ElectionInput, type Observed, type RouteState } from "./machine.js";
import { SessionKeeper } from "./session-keeper.js";
import { runPrefixWatch } from "./watch.js";

/** Fencing gate: resolves true only when this node may write the route right now. */
export type WriteGate = (routeName: string) => Promise<boolean>;

/** What the election needs from the route writer (agent/routes RouteController fits). */
export interface RouteWriter {
  /** One describe for every table of the routes, then a fenced write for each that is not ours. */
  reconcile(heldRoutes: readonly string[], gate: WriteGate): Promise<{ routeName: string; action: string; tables: { tableId: string; action: string }[]; ms: number }[]>;
  release(routeName: string, gate: WriteGate): Promise<void>;
}

/** What the election needs from the health monitor. */
export interface HealthView {
  allPassing(names: readonly string[]): boolean;
}

/** Failover policy (AZ preference, failback hold-downs, operator handovers). */
export interface ElectionPolicy {
  /** May this node contend for the route now? `freeSince`: when the key was seen free. */
  mayContend(route: RouteConfig, ctx: { now: number; freeSince?: number }): boolean;
  /** Should this node, holding the route, hand it over now? */
  handOver(route: RouteConfig, now: number): "failback" | "handover" | undefined;
  /** Called after a voluntary handover's release. */
  handedOver?(route: RouteConfig, reason: "failback" | "handover"): Promise<void>;
}

export interface ElectionDeps {
  api: ConsulApi;
  config: Config;
  identity: Identity;
  clock: Clock;
  log: Logger;
  routes: RouteWriter;
  health: HealthView;
  /** Consul service id of this node; its liveness check is `${serviceId}:liveness`. */
  serviceId: string;
  /** Consul check id of a named health check. */
  checkId: (checkName: string) => string;
  policy?: ElectionPolicy;
  /** Every snapshot of the routes prefix (the policy reads failback markers and handover requests). */
  onSnapshot?: (entries: readonly KvEntry[]) => void;
  random?: () => number;
}

/** How often the runner re-evaluates eligibility and timers without an event. */
const TICK_MS = 200;
/** Bound on waiting for peers to take released routes during a graceful stop. */
export const HANDOVER_WAIT_MS = 5000;

export function livenessCheckId(serviceId: string): string {
  return `${serviceId}:liveness`;
}

/** The distinct check sets of the routes: one session per set. */
export function checkSetKey(checks: readonly string[]): string {
  return [...checks].sort().join(",") || "-";
}

/**
 * Runs the per-route elections of this node: the prefix watch, one session keeper per check
 * set, the liveness heartbeat, the fencing gate and the route writes.
 *
 * Guarantees and non-guarantees: Consul sessions prefer liveness over safety, and EC2 route
 * writes cannot be made conditional, so this does not guarantee a single writer. It bounds
 * a stale write instead: every write passes a consistent read of the key (this session, the
 * LockIndex recorded at acquire) and the local lease deadline; writes have a hard timeout
 * shorter than lockDelay − margin; a new holder re-asserts its routes through the first
 * lock-delay window. Time is local monotonic time only.
 */
export class Election {
  private readonly states = new Map<string, RouteState>();
  private readonly routesByName = new Map<string, RouteConfig>();
  private readonly keepers = new Map<string, SessionKeeper>();
  private readonly listeners: ElectionListener[] = [];
  /** Routes waiting for the next write batch, and the routes of the batch in flight. */
  private readonly pendingWrites = new Set<string>();
  private readonly writingRoutes = new Set<string>();
  private writeBatch: Promise<void> | undefined;
  private readonly stopController = new AbortController();
  private readonly tasks: Promise<void>[] = [];
  private lastLivenessPassAt = 0;
  private draining = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly random: () => number;

  constructor(private readonly deps: ElectionDeps) {
    this.random = deps.random ?? Math.random;
    for (const route of deps.config.routes) {
      this.routesByName.set(route.name, route);
      this.states.set(route.name, initialState(route.name));
    }
    const { config, serviceId } = deps;
    for (const route of config.routes) {
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
          onChange: (session, previous) => this.onSessionChange(setKey, session, previous),
        }),
      );
    }
  }

  on(listener: ElectionListener): void {
    this.listeners.push(listener);
  }

  /** Routes this node holds now. */
  heldRoutes(): string[] {
    return [...this.states.values()].filter((s) => s.phase === "holding").map((s) => s.route);
  }

  routeStates(): readonly RouteState[] {
    return [...this.states.values()];
  }

  /** The local lease deadline (monotonic ms): no write starts after it. */
  leaseDeadline(session: string): number {
    const keeper = [...this.keepers.values()].find((k) => k.current === session);
    const { sessionTtl, livenessTtl, fenceMargin } = this.deps.config.election;
    return leaseDeadline({
      lastRenewAt: keeper?.lastRenewAt ?? 0,
      sessionTtlMs: sessionTtl,
      lastLivenessPassAt: this.lastLivenessPassAt,
      livenessTtlMs: livenessTtl,
      marginMs: fenceMargin,
    });
  }

  /** Starts the heartbeat first: sessions bind the liveness check, which must pass before one can be created. */
  async start(): Promise<void> {
    const signal = this.stopController.signal;
    await this.passLiveness();
    this.tasks.push(this.livenessLoop(signal));
    for (const keeper of this.keepers.values()) this.tasks.push(keeper.run(signal));
    this.tasks.push(
      runPrefixWatch(
        {
          api: this.deps.api,
          prefix: routesPrefix(this.deps.config.cluster),
          waitMs: this.deps.config.election.watchWait,
          clock: this.deps.clock,
          log: this.deps.log,
          onSnapshot: (entries) => this.onSnapshot(entries),
        },
        signal,
      ),
    );
    this.tasks.push(this.reconcileLoop(signal));
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  /** Re-evaluates whether each route may be contended (health, drain, policy, session). */
  refreshEligibility(): void {
    const now = this.deps.clock.now();
    for (const route of this.routesByName.values()) {
      const state = this.states.get(route.name) as RouteState;
      const session = this.keepers.get(checkSetKey(route.checks))?.current;
      const healthy = this.deps.health.allPassing(route.checks);
      const allowed = this.deps.policy ? this.deps.policy.mayContend(route, { now, ...(state.freeSince !== undefined && !state.observed?.session ? { freeSince: state.freeSince } : {}) }) : true;
      const eligible = !this.draining && healthy && allowed;
      if (state.phase === "holding" && !healthy) {
        this.dispatch(route.name, { type: "releaseRequested", reason: "checkFailed" });
        continue;
      }
      if (state.phase === "releasing" || state.phase === "holding") continue;
      if (state.eligible !== eligible || state.session !== session) this.dispatch(route.name, { type: "eligibility", eligible, ...(session ? { session } : {}) });
    }
  }

  /** Releases the given routes now (no lock-delay) and resolves when each release is done. */
  async releaseRoutes(names: readonly string[], reason: ReleaseReason): Promise<void> {
    const waits = names.filter((n) => this.states.get(n)?.phase === "holding").map((n) => this.whenPhase(n, (s) => s.phase !== "releasing" && s.phase !== "holding"));
    for (const n of names) this.dispatch(n, { type: "releaseRequested", reason });
    await Promise.all(waits);
  }

  /**
   * Resolves when every route is settled: held here with its first write done, or held by
   * another node; or when the timeout passes or the signal aborts (for `once`).
   */
  async whenSettled(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const mine = () => new Set([...this.keepers.values()].map((k) => k.current).filter(Boolean));
    const settled = (s: RouteState) => (s.phase === "holding" && !this.writeBusy(s.route)) || (!!s.observed?.session && !mine().has(s.observed.session));
    const all = Promise.all([...this.states.keys()].map((r) => this.whenPhase(r, settled)));
    const stop = new Promise<void>((resolve) => {
      if (signal?.aborted) resolve();
      signal?.addEventListener("abort", () => resolve(), { once: true });
    });
    await Promise.race([all, stop, this.deps.clock.sleep(timeoutMs).catch(() => undefined)]);
    await this.writeBatch;
  }

  /** Routes using a check: released before that check is failed in Consul. */
  routesUsingCheck(checkName: string): string[] {
    return [...this.routesByName.values()].filter((r) => r.checks.includes(checkName)).map((r) => r.name);
  }

  /** Stop contending (true) or contend again (false). Draining releases every held route. */
  async setDraining(draining: boolean, reason: ReleaseReason = "drain"): Promise<void> {
    this.draining = draining;
    if (draining) await this.releaseRoutes(this.heldRoutes(), reason);
    this.refreshEligibility();
  }

  /**
   * Graceful stop: stop contending, release every held route (before any check fails or the
   * session is destroyed: both would impose lock-delay on keys still held), wait (bounded)
   * until a peer holds each, then fail liveness and destroy the sessions.
   */
  async stop(reason: ReleaseReason = "shutdown", handoverWaitMs = HANDOVER_WAIT_MS): Promise<{ handedOver: string[]; notTaken: string[] }> {
    const released = this.heldRoutes();
    await this.setDraining(true, reason);
    const notTaken = await this.waitForPeers(released, handoverWaitMs);
    this.stopController.abort();
    if (this.timer) clearInterval(this.timer);
    await this.deps.api.updateTtlCheck(livenessCheckId(this.deps.serviceId), "critical", "routeleader stopping").catch(() => undefined);
    await Promise.all([...this.keepers.values()].map((k) => k.destroy()));
    await Promise.allSettled(this.tasks);
    await this.writeBatch;
    return { handedOver: released.filter((r) => !notTaken.includes(r)), notTaken };
  }

  /** Waits until another session holds each route; returns those still free at the deadline. */
  private async waitForPeers(routes: readonly string[], timeoutMs: number): Promise<string[]> {
    const mine = new Set([...this.keepers.values()].map((k) => k.current).filter(Boolean));
    const takenByPeer = (r: string) => {
      const o = this.states.get(r)?.observed;
      return !!o?.session && !mine.has(o.session);
    };
    const deadline = this.deps.clock.now() + timeoutMs;
    await Promise.race([
      Promise.all(routes.map((r) => this.whenPhase(r, () => takenByPeer(r)))),
      this.deps.clock.sleep(Math.max(0, deadline - this.deps.clock.now())).catch(() => undefined),
    ]);
    return routes.filter((r) => !takenByPeer(r));
  }

  // ------------------------------------------------------------------ dispatch

  private readonly phaseWaiters = new Map<string, { test: (s: RouteState) => boolean; resolve: () => void }[]>();

  private whenPhase(route: string, test: (s: RouteState) => boolean): Promise<void> {
    const state = this.states.get(route);
    if (!state || test(state)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.phaseWaiters.get(route) ?? [];
      list.push({ test, resolve });
      this.phaseWaiters.set(route, list);
    });
  }

  private dispatch(route: string, input: ElectionInput): void {
    const state = this.states.get(route);
    if (!state) return;
    const now = this.deps.clock.now();
    const { state: next, commands } = step(state, input, now, { lockDelayMs: this.deps.config.election.lockDelay, random: this.random });
    this.states.set(route, next);
    for (const command of commands) this.execute(command);
    this.notifyWaiters(route);
  }

  private notifyWaiters(route: string): void {
    const waiters = this.phaseWaiters.get(route);
    const state = this.states.get(route);
    if (!waiters || !state) return;
    this.phaseWaiters.set(
      route,
      waiters.filter((w) => {
        if (!w.test(state)) return true;
        w.resolve();
        return false;
      }),
    );
  }

  private tick(): void {
    const now = this.deps.clock.now();
    this.refreshEligibility();
    this.considerHandovers(now);
    for (const state of this.states.values()) {
      const wake = nextWake(state, now);
      if (wake !== undefined && wake <= now) this.dispatch(state.route, { type: "tick" });
    }
  }

  private readonly handingOver = new Set<string>();

  /** A holder hands a route over (failback to its preferred AZ, or an operator's request). */
  private considerHandovers(now: number): void {
    const policy = this.deps.policy;
    if (!policy || this.draining) return;
    for (const state of this.states.values()) {
      if (state.phase !== "holding" || this.handingOver.has(state.route)) continue;
      const route = this.routesByName.get(state.route) as RouteConfig;
      const reason = policy.handOver(route, now);
      if (!reason) continue;
      this.handingOver.add(state.route);
      this.deps.log.info({ route: state.route, reason }, `${state.route}: handing over (${reason})`);
      void this.releaseRoutes([state.route], reason)
        .then(() => policy.handedOver?.(route, reason))
        .finally(() => this.handingOver.delete(state.route));
    }
  }

  private onSnapshot(entries: readonly KvEntry[]): void {
    this.deps.onSnapshot?.(entries);
    // The snapshot may carry a handover request: decide eligibility on it before anyone
    // contends for a key this same snapshot shows free.
    this.refreshEligibility();
    const byRoute = new Map<string, KvEntry>();
    for (const e of entries) {
      const route = routeOfKey(this.deps.config.cluster, e.key);
      if (route) byRoute.set(route, e);
    }
    for (const route of this.states.keys()) {
      const e = byRoute.get(route);
      const holder = e ? parseHolder(e.value) : undefined;
      const observed: Observed | null = e ? { lockIndex: e.lockIndex, modifyIndex: e.modifyIndex, ...(e.session ? { session: e.session } : {}), ...(holder ? { holder } : {}) } : null;
      const before = this.states.get(route)?.observed;
      if (before !== undefined && before?.session === observed?.session && before?.lockIndex === observed?.lockIndex && before?.modifyIndex === observed?.modifyIndex) continue;
      this.dispatch(route, { type: "observed", entry: observed });
    }
  }

  private onSessionChange(setKey: string, session: string | undefined, previous: string | undefined): void {
    if (previous && !session) {
      for (const route of this.routesByName.values()) {
        if (checkSetKey(route.checks) === setKey) this.dispatch(route.name, { type: "sessionLost", session: previous });
      }
    }
    this.refreshEligibility();
  }

  private emit(event: ElectionEvent): void {
    const { log } = this.deps;
    switch (event.type) {
      case "acquired":
        log.info({ route: event.route, event: "acquired", lockIndex: event.lockIndex, waitedMs: event.waitedMs }, `acquired ${event.route}`);
        break;
      case "released":
        log.info({ route: event.route, event: "released", reason: event.reason, heldMs: event.heldMs }, `released ${event.route} (${event.reason})`);
        break;
      case "lost":
        log.warn({ route: event.route, event: "lost", reason: event.reason, newHolder: event.newHolder }, `lost ${event.route} (${event.reason}); writes stopped`);
        break;
      case "leaderChanged":
        log.info({ route: event.route, event: "leaderChanged", holder: event.holder?.instanceId ?? null, az: event.holder?.az }, `${event.route} holder: ${event.holder?.instanceId ?? "none"}`);
        break;
      case "routeWritten":
        log.info({ route: event.route, event: "routeWritten", action: event.action, tables: event.tables, ms: event.ms }, `${event.route}: ${event.action}`);
        break;
      case "writeRefused":
        log.warn({ route: event.route, event: "writeRefused", reason: event.reason }, `${event.route}: write refused (${event.reason})`);
        break;
    }
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        log.error({ err: (err as Error).message, event: event.type }, "election listener failed");
      }
    }
  }

  // ------------------------------------------------------------------ commands

  private execute(command: ElectionCommand): void {
    switch (command.type) {
      case "emit":
        this.emit(command.event);
        break;
      case "acquire":
        void this.acquire(command.route, command.session);
        break;
      case "release":
        void this.release(command.route, command.session, command.reason);
        break;
      case "writeRoute":
        this.write(command.route);
        break;
    }
  }

  private holderValue(session: string, lockIndex: number, acquiredAt: string, release?: ReleaseReason): string {
    const { identity } = this.deps;
    const holder: HolderInfo = {
      instanceId: identity.instanceId,
      az: identity.az,
      eni: identity.eniId,
      privateIp: identity.privateIp,
      session,
      lockIndex,
      acquiredAt,
      agentVersion: VERSION,
      ...(release ? { releasedAt: new Date(this.deps.clock.wallNow()).toISOString(), releaseReason: release } : {}),
    };
    return encodeHolder(holder);
  }

  private async acquire(route: string, session: string): Promise<void> {
    const { api, config } = this.deps;
    const key = routeKey(config.cluster, route);
    const acquiredAt = new Date(this.deps.clock.wallNow()).toISOString();
    // A new holder gets LockIndex + 1. The value states the expected index for operators; the
    // fencing gate uses the index read back below, never this one. (A second acquire to fix
    // the value up could land after a quick release and take the key again.)
    const expectedLockIndex = (this.states.get(route)?.observed?.lockIndex ?? 0) + 1;
    try {
      const ok = await api.acquire(key, session, this.holderValue(session, expectedLockIndex, acquiredAt), 3000);
      const read = await api.kvRead(key, { consistent: ok });
      const entry = read.entries[0];
      if (ok && entry?.session === session) {
        this.dispatch(route, { type: "acquireResult", outcome: "acquired", lockIndex: entry.lockIndex });
        return;
      }
      this.dispatch(route, { type: "acquireResult", outcome: entry?.session ? "heldByOther" : "lockDelay" });
    } catch (err) {
      if (err instanceof SessionNotFoundError) {
        this.dispatch(route, { type: "acquireResult", outcome: "sessionInvalid" });
        for (const k of this.keepers.values()) k.invalidate(session);
      } else {
        this.deps.log.warn({ route, err: (err as Error).message }, "acquire outcome unknown");
        this.dispatch(route, { type: "acquireResult", outcome: "unknown" });
      }
    }
  }

  private async release(route: string, session: string, reason: ReleaseReason): Promise<void> {
    const { api, config, log } = this.deps;
    const started = this.deps.clock.now();
    const state = this.states.get(route);
    try {
      // A write that passed the gate before the release was asked for may still be in flight:
      // let it end (it is bounded by aws.writeTimeout) so it cannot land after a peer's.
      if (this.writeBusy(route)) await this.writeBatch;
      // onRelease: delete removes the route while this node still holds the lock.
      await this.deps.routes.release(route, (name) => this.releaseGate(name, session)).catch((err: Error) => log.warn({ route, err: err.message }, "route delete on release failed"));
      const lockIndex = state?.held?.lockIndex ?? 0;
      const acquiredAt = state?.held ? new Date(this.deps.clock.wallNow() - (this.deps.clock.now() - state.held.acquiredAt)).toISOString() : "";
      await api.release(routeKey(config.cluster, route), session, this.holderValue(session, lockIndex, acquiredAt, reason), 2000);
      log.debug({ route, ms: this.deps.clock.now() - started }, "key released");
    } catch (err) {
      log.warn({ route, err: (err as Error).message }, "release failed; the key frees when the session is invalidated");
    } finally {
      this.dispatch(route, { type: "releaseDone" });
    }
  }

  /** During a release the route is in phase "releasing"; only its own delete may pass. */
  private async releaseGate(route: string, session: string): Promise<boolean> {
    return this.verifyOwnership(route, session, this.states.get(route)?.held?.lockIndex);
  }

  private writeBusy(route: string): boolean {
    return this.pendingWrites.has(route) || this.writingRoutes.has(route);
  }

  /**
   * Queues a route for the next write batch. Writes wanted in the same turn (a failover of
   * many routes, a reconcile tick) go out together: one describe for all their tables, then a
   * fenced write for each route that does not point here.
   */
  private write(route: string): void {
    this.pendingWrites.add(route);
    this.writeBatch ??= this.runWriteBatches().finally(() => {
      this.writeBatch = undefined;
    });
  }

  private async runWriteBatches(): Promise<void> {
    while (this.pendingWrites.size) {
      // Let the commands of the same event-loop turn join the batch.
      await new Promise((resolve) => setImmediate(resolve));
      const routes = [...this.pendingWrites].filter((r) => this.states.get(r)?.phase === "holding");
      this.pendingWrites.clear();
      if (!routes.length) continue;
      for (const r of routes) this.writingRoutes.add(r);
      try {
        const results = await this.deps.routes.reconcile(routes, this.gate);
        for (const result of results) {
          if (result.action === "unchanged" || result.action === "skipped-gate") continue;
          this.emit({ type: "routeWritten", route: result.routeName, action: result.action, tables: result.tables.map((t) => `${t.tableId}:${t.action}`), ms: result.ms, at: this.deps.clock.now() });
        }
      } catch (err) {
        this.deps.log.error({ routes, err: (err as Error).message }, "route write failed; reconcile will retry");
      } finally {
        for (const r of routes) {
          this.writingRoutes.delete(r);
          this.notifyWaiters(r);
        }
      }
    }
  }

  /** The fencing gate: holding, inside the lease, and Consul confirms (consistent read). */
  readonly gate: WriteGate = async (route) => {
    const state = this.states.get(route);
    if (state?.phase !== "holding" || !state.held) return false;
    return this.verifyOwnership(route, state.held.session, state.held.lockIndex);
  };

  private async verifyOwnership(route: string, session: string, lockIndex: number | undefined): Promise<boolean> {
    const now = this.deps.clock.now();
    if (now > this.leaseDeadline(session)) {
      this.emit({ type: "writeRefused", route, reason: "lease deadline passed", at: now });
      return false;
    }
    try {
      const read = await this.deps.api.kvRead(routeKey(this.deps.config.cluster, route), { consistent: true, timeoutMs: 1000 });
      const entry = read.entries[0];
      if (entry?.session === session && entry.lockIndex === lockIndex) {
        if (this.deps.clock.now() > this.leaseDeadline(session)) {
          this.emit({ type: "writeRefused", route, reason: "lease deadline passed", at: this.deps.clock.now() });
          return false;
        }
        return true;
      }
      this.emit({ type: "writeRefused", route, reason: `key no longer ours (session ${entry?.session ?? "none"}, lockIndex ${entry?.lockIndex ?? "-"})`, at: this.deps.clock.now() });
      return false;
    } catch (err) {
      this.emit({ type: "writeRefused", route, reason: `ownership unknown: ${(err as Error).message}`, at: this.deps.clock.now() });
      return false;
    }
  }

  // ------------------------------------------------------------------ loops

  private async passLiveness(): Promise<void> {
    const started = this.deps.clock.now();
    const held = this.heldRoutes();
    await this.deps.api.updateTtlCheck(livenessCheckId(this.deps.serviceId), "passing", `routeleader ${VERSION} alive; holds ${held.length ? held.join(", ") : "no routes"}`, 1000);
    this.lastLivenessPassAt = started;
  }

  private async livenessLoop(signal: AbortSignal): Promise<void> {
    const interval = this.deps.config.election.livenessTtl / 3;
    while (!signal.aborted) {
      await this.deps.clock.sleep(interval, signal).catch(() => undefined);
      if (signal.aborted) break;
      await this.passLiveness().catch((err: Error) => this.deps.log.warn({ step: "liveness", err: err.message }, "liveness heartbeat failed"));
    }
  }

  private async reconcileLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.deps.clock.sleep(this.deps.config.reconcileInterval, signal).catch(() => undefined);
      if (signal.aborted) break;
      for (const route of this.heldRoutes()) this.write(route);
      await this.writeBatch;
    }
  }
}
