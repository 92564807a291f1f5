import type { Config, RouteConfig } from "../config/index.js";
import type { KvEntry } from "../consul/index.js";
import { decide, initialLocal, nextDue, releaseReasonOf, type Action, type KeyView, type RouteLocal } from "./decide.js";
import type { ElectionDeps } from "./deps.js";
import { emitEvent, logUncertainOutcome } from "./event-log.js";
import type { ElectionEvent, ElectionListener, ReleaseReason } from "./events.js";
import type { ActionExecutor } from "./executor.js";
import { fencedExecutor } from "./fencing.js";
import { routesPrefix } from "./holder.js";
import { applyOutcome, type Outcome } from "./results.js";
import { checkSetKey, Sessions } from "./sessions.js";
import { unconfirmedReason, routeStatus, summaryLine, type RouteStatus } from "./status.js";
import { keyViews, routeView } from "./view.js";
import { Waiters, Wakeup } from "./wakeup.js";
import { runPrefixWatch } from "./watch.js";

/**
 * Upper bound of the loop's sleep, a safety net: every change wakes the loop (a snapshot, a
 * session, a check, an outcome, a policy judgement) and every timed step is due in
 * nextDue or the policy's nextChangeAt. Each cycle decides every route: at 250 ms this was a
 * fifth of an idle agent's CPU (issue #16).
 */
const MAX_IDLE_MS = 1000;
/** Bound on waiting for peers to take released routes during a graceful stop. */
export const HANDOVER_WAIT_MS = 5000;

/**
 * Runs the per-route elections of this node as one level-triggered loop: wait for any
 * wake-up, read the whole current state (latest snapshot, sessions, health, policy, drain,
 * actions in flight), decide per route, hand the actions to the executor.
 *
 * Guarantees and non-guarantees: Consul sessions prefer liveness over safety, and EC2 route
 * writes cannot be made conditional, so this does not guarantee a single writer. It bounds a
 * stale write instead: every write attempt passes a consistent read of the key (this session,
 * the LockIndex recorded at acquire) and the local lease deadline; writes have a hard timeout
 * shorter than lockDelay − margin; a new holder re-asserts its routes through the first
 * lock-delay window. Time is local monotonic time only.
 */
export class Election {
  private readonly routes: RouteConfig[];
  private readonly locals = new Map<string, RouteLocal>();
  private readonly statuses = new Map<string, RouteStatus>();
  private readonly outcomes: { id: number; action: Action; outcome: Outcome }[] = [];
  private readonly listeners: ElectionListener[] = [];
  private readonly waiters = new Waiters();
  private readonly tasks = new Set<Promise<unknown>>();
  private readonly stopController = new AbortController();
  private readonly sessions: Sessions;
  private readonly executor: ActionExecutor;
  private readonly wakeup: Wakeup;
  private readonly random: () => number;
  private snapshot: { keys: Map<string, KeyView>; index: number } | undefined;
  private draining: ReleaseReason | undefined;
  private nextReconcileAt = 0;
  /** The configuration in force: a reload replaces it (see reconfigure). */
  private config: Config;
  /** Routes a reload removed: released (reason "removed"), then dropped. */
  private readonly retiring = new Set<string>();
  /** A line about the last reload for the liveness check's output, while there is something to say. */
  private reloadNote: string | undefined;
  /** Routes owed a reconcile since the last tick: kept until a write of theirs goes out (one in flight at the tick must not skip it). */
  private readonly reconcilePending = new Set<string>();
  /** When the routes watch last answered, and since when it has been failing (for /status). */
  private consulAnsweredAt = 0;
  private consulFailingSince: number | undefined;

  constructor(private readonly deps: ElectionDeps) {
    this.random = deps.random ?? Math.random;
    this.config = deps.config;
    this.wakeup = new Wakeup(deps.clock);
    this.routes = [...deps.config.routes];
    for (const route of this.routes) this.locals.set(route.name, initialLocal());
    this.sessions = new Sessions({ ...deps, onChange: () => this.wake(), summary: () => this.summary() });
    this.executor = fencedExecutor(deps, this.sessions, (event) => this.emit(event), (id, action, outcome) => {
      this.outcomes.push({ id, action, outcome });
      this.wake();
    });
  }

  on(listener: ElectionListener): void {
    this.listeners.push(listener);
  }

  /** Wakes the loop: something it reads changed (a check, an operator request). */
  wake(): void {
    this.wakeup.notify();
  }

  /** Routes whose key this node holds in Consul now (including those being released). */
  heldRoutes(): string[] {
    return this.routes.filter((r) => this.locals.get(r.name)?.held).map((r) => r.name);
  }

  /** Why this node is draining, if it is. */
  get drainingReason(): ReleaseReason | undefined {
    return this.draining;
  }

  /** One line for the Consul UI: what is held, and which routes are given up and why. */
  summary(): string {
    return summaryLine(this.heldRoutes(), this.routeStates(), this.draining, this.reloadNote);
  }

  /** What the liveness check's output says about the last reload (undefined: nothing). */
  noteReload(note: string | undefined): void {
    this.reloadNote = note;
  }

  /**
   * A reload: routes new to the configuration join the election at once; routes it no longer
   * names are released (reason "removed", never deleted from a table unless their onRelease
   * says so) and dropped once released; a changed route takes its new settings (a new check
   * set means a new session: the holder releases it and contends again under that session).
   * Check sets new to the routes get a session with the new timers.
   */
  reconfigure(config: Config): void {
    this.config = config;
    const names = new Set(config.routes.map((r) => r.name));
    for (const route of this.routes) if (!names.has(route.name)) this.retiring.add(route.name);
    for (const route of config.routes) {
      this.retiring.delete(route.name);
      const at = this.routes.findIndex((r) => r.name === route.name);
      if (at >= 0) this.routes[at] = route;
      else {
        this.routes.push(route);
        this.locals.set(route.name, initialLocal());
      }
    }
    for (const task of this.sessions.reconfigure(config, this.routes)) this.track(task);
    this.deps.log.info({ step: "reload", routes: config.routes.map((r) => r.name), retiring: [...this.retiring] }, "election reconfigured");
    this.wake();
  }

  /** Resolves when none of these routes is in the election any more (released and dropped), or on abort. */
  async whenDropped(names: readonly string[], signal?: AbortSignal): Promise<boolean> {
    this.wake();
    return this.waiters.until(() => names.every((n) => !this.retiring.has(n) || !this.routes.some((r) => r.name === n)), 24 * 3600_000, signal);
  }

  /** Resolves when no session of this node is bound to any of these Consul check ids, or on abort. */
  async whenUnbound(checkIds: readonly string[], signal?: AbortSignal): Promise<boolean> {
    this.wake();
    return this.waiters.until(() => !this.sessions.binds(checkIds), 24 * 3600_000, signal);
  }

  /**
   * Each route as of the last cycle; a held one is marked unconfirmed while Consul is silent or
   * unreachable; one not held says `noSession` while this node has no session to take it with.
   */
  routeStates(): readonly RouteStatus[] {
    const silence = unconfirmedReason({ now: this.deps.clock.now(), answeredAt: this.consulAnsweredAt, failingSince: this.consulFailingSince, watchWaitMs: this.config.election.watchWait, cutOff: this.deps.cutOff?.() });
    return this.routes.map((r) => {
      const status = this.statuses.get(r.name) ?? { route: r.name, phase: "idle", eligible: false, reason: "starting" };
      if (silence && status.held) return { ...status, unconfirmed: silence };
      // Without a session this node cannot take the route whatever else it passes: say why.
      const noSession = status.held ? undefined : this.sessions.noSessionReason(r);
      return noSession ? { ...status, noSession } : status;
    });
  }

  leaseDeadline(session: string): number {
    return this.sessions.leaseDeadline(session);
  }

  /** When this node's liveness check last passed (for a fallback writer's election sharing it). */
  livenessPassedAt(): number {
    return this.sessions.livenessPassedAt();
  }

  routesUsingCheck(checkName: string): string[] {
    return this.routes.filter((r) => r.checks.includes(checkName)).map((r) => r.name);
  }

  /** Starts the heartbeat first: sessions bind the liveness check, which must pass before one can be created. */
  async start(): Promise<void> {
    const signal = this.stopController.signal;
    await this.sessions.passLiveness();
    this.nextReconcileAt = this.deps.clock.now() + this.config.reconcileInterval;
    for (const task of this.sessions.run(signal)) this.track(task);
    const { api, config, clock, log } = this.deps;
    this.consulAnsweredAt = clock.now();
    const watch = { api, prefix: routesPrefix(config.cluster), waitMs: () => this.config.election.watchWait, clock, log, onSnapshot: (entries: readonly KvEntry[], index: number) => this.onSnapshot(entries, index), onError: () => (this.consulFailingSince ??= clock.now()) };
    this.track(runPrefixWatch(watch, signal));
    this.track(this.loop(signal));
  }

  /** Resolves when none of the routes is held here any more (released and confirmed), or at the timeout. */
  whenReleased(names: readonly string[], timeoutMs: number): Promise<boolean> {
    this.wake();
    return this.waiters.until(() => names.every((n) => !this.locals.get(n)?.held), timeoutMs);
  }

  /** Stop contending and release everything (true), or contend again (false). Resolves when Consul confirms or at the timeout. */
  async setDraining(draining: boolean, reason: ReleaseReason = "drain", timeoutMs = 10_000): Promise<void> {
    this.draining = draining ? reason : undefined;
    if (draining) await this.whenReleased(this.routes.map((r) => r.name), timeoutMs);
    else this.wake();
  }

  /** Resolves when every route is settled (held here with its first write done, or held by a peer), at the timeout, or on abort. */
  async whenSettled(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const settled = () => this.routeStates().every((s) => (s.phase === "holding" && !this.locals.get(s.route)?.writeDueAt && !this.executor.inFlight(s.route)) || (!!s.holder && !s.held));
    await this.waiters.until(settled, timeoutMs, signal);
  }

  /**
   * Graceful stop: stop contending and release every held route (before any check fails or a
   * session is destroyed: both would impose lock-delay on keys still held), wait (bounded)
   * until a peer holds each, then fail liveness and destroy the sessions.
   */
  async stop(reason: ReleaseReason = "shutdown", handoverWaitMs = HANDOVER_WAIT_MS): Promise<{ handedOver: string[]; notTaken: string[] }> {
    const released = this.heldRoutes();
    const deadline = this.deps.clock.now() + handoverWaitMs;
    await this.setDraining(true, reason, handoverWaitMs);
    const takenByPeer = (r: string) => !!this.snapshot?.keys.get(r)?.session && !this.sessions.all().includes(this.snapshot.keys.get(r)?.session as string);
    await this.waiters.until(() => released.every(takenByPeer), Math.max(0, deadline - this.deps.clock.now()));
    const notTaken = released.filter((r) => !takenByPeer(r));
    this.stopController.abort();
    this.wake();
    await this.executor.idle();
    await this.sessions.close();
    while (this.tasks.size) await Promise.allSettled([...this.tasks]);
    return { handedOver: released.filter((r) => !notTaken.includes(r)), notTaken };
  }

  private track(task: Promise<unknown>): void {
    const tracked = task.catch((err: Error) => this.deps.log.error({ err: err.message }, "election task failed")).finally(() => this.tasks.delete(tracked));
    this.tasks.add(tracked);
  }

  private onSnapshot(entries: readonly KvEntry[], index: number): void {
    this.consulAnsweredAt = this.deps.clock.now();
    this.consulFailingSince = undefined;
    this.deps.onSnapshot?.(entries);
    this.snapshot = { keys: keyViews(this.deps.config.cluster, entries), index };
    this.wake();
  }

  private async loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const now = this.deps.clock.now();
      try {
        this.cycle(now);
      } catch (err) {
        this.deps.log.error({ err: (err as Error).message, stack: (err as Error).stack }, "election cycle failed: please report it as a bug");
      }
      const later = [...this.locals.values()]
        .map(nextDue)
        .concat(this.nextReconcileAt, this.policyChanges(now))
        .filter((t): t is number => t !== undefined && t > now);
      const wait = Math.min(MAX_IDLE_MS, ...later.map((t) => t - now));
      await this.wakeup.wait(Math.max(1, wait), signal);
    }
  }

  /** When the policy's verdict on each route could next change with time alone. */
  private policyChanges(now: number): (number | undefined)[] {
    const policy = this.deps.policy;
    if (!policy?.nextChangeAt) return [];
    return this.routes.map((route) => {
      const freeSince = this.locals.get(route.name)?.freeSince;
      return policy.nextChangeAt?.(route, { now, ...(freeSince !== undefined ? { freeSince } : {}) });
    });
  }

  /** One cycle: fold the outcomes in, then decide every route from the whole current state. */
  private cycle(now: number): void {
    const { health, policy, log } = this.deps;
    const config = this.config;
    for (const { action, outcome } of this.outcomes.splice(0)) this.fold(action, outcome, now);
    if (now >= this.nextReconcileAt) {
      this.nextReconcileAt = now + config.reconcileInterval;
      for (const route of this.routes) this.reconcilePending.add(route.name);
    }
    const actions: Action[] = [];
    for (const route of [...this.routes]) {
      const local = this.locals.get(route.name) as RouteLocal;
      const session = this.sessions.sessionFor(route);
      const inFlight = this.executor.inFlight(route.name);
      const view = routeView({ route, now, local, snapshot: this.snapshot, session, sessions: this.sessions, health, policy, draining: this.draining, retiring: this.retiring.has(route.name), inFlight, reconcileDue: this.reconcilePending.has(route.name) });
      const decision = decide(view, local, config.election.lockDelay);
      if (!decision.local.held || decision.actions.some((a) => a.kind === "write")) this.reconcilePending.delete(route.name);
      this.locals.set(route.name, decision.local);
      for (const event of decision.events) this.emit(event);
      if (decision.cancelWrite) this.executor.cancelWrite(route.name);
      actions.push(...decision.actions);
      if (this.statuses.get(route.name)?.reason !== decision.reason) log.debug({ route: route.name, reason: decision.reason }, `${route.name}: ${decision.reason}`);
      const wanted = !releaseReasonOf(view, decision.local) && view.mayContend && !!session;
      this.statuses.set(route.name, routeStatus(route.name, decision.local, view.key, wanted, decision.reason, now, inFlight === "release" || decision.actions.some((a) => a.kind === "release")));
      if (this.retiring.has(route.name) && !decision.local.held && !inFlight && decision.actions.length === 0) this.drop(route.name);
    }
    this.executor.submit(actions);
    if (!this.routes.some((r) => this.executor.inFlight(r.name))) {
      const held = new Set([...this.locals.values()].flatMap((l) => (l.held ? [l.held.session] : [])));
      this.sessions.prune(new Set(this.routes.map((r) => checkSetKey(r.checks))), held);
    }
    this.waiters.check();
  }

  /** A removed route, released: out of the election. */
  private drop(name: string): void {
    const at = this.routes.findIndex((r) => r.name === name);
    if (at >= 0) this.routes.splice(at, 1);
    this.locals.delete(name);
    this.statuses.delete(name);
    this.retiring.delete(name);
    this.reconcilePending.delete(name);
    this.deps.log.info({ step: "reload", route: name, event: "routeDropped" }, `${name}: removed from the configuration and not held: dropped from the election`);
  }

  private fold(action: Action, outcome: Outcome, now: number): void {
    const local = this.locals.get(action.route);
    if (!local) return;
    if (outcome.kind === "acquire" && outcome.result === "sessionInvalid" && action.kind === "acquire") this.sessions.invalidate(action.session);
    logUncertainOutcome(this.deps.log, action.route, outcome);
    const applied = applyOutcome(local, action, outcome, now, this.random, this.config.election.lockDelay);
    this.locals.set(action.route, applied.local);
    for (const event of applied.events) this.emit(event);
    const route = this.routes.find((r) => r.name === action.route);
    if (route && (applied.releasedFor === "failback" || applied.releasedFor === "handover") && this.deps.policy?.handedOver) this.track(this.deps.policy.handedOver(route, applied.releasedFor));
  }

  private readonly emit = (event: ElectionEvent): void => emitEvent(this.deps.log, this.listeners, event);
}
