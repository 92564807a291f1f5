import { SessionNotFoundError, type ConsulApi } from "../consul/index.js";
import type { Logger } from "../observe/log.js";
import type { Action, ActionKind } from "./decide.js";
import type { ReleaseReason } from "./events.js";
import { routeKey } from "./holder.js";
import type { Outcome } from "./results.js";

/** Fencing gate: resolves true only when this node may write the route right now. */
export type WriteGate = (routeName: string) => Promise<boolean>;

/** One route's write outcome from the route writer. */
export type RouteWriteOutcome =
  | { ok: true; result: { action: string; tables: { tableId: string; action: string }[]; ms: number } }
  | { ok: false; fatal: boolean; message: string };

/**
 * One route to bring to this node. `force` writes it even where a read shows it ours (a
 * re-assert); `takeoverFrom` names the previous holder of a hold just taken: the writer may
 * write before reading, since the route almost surely points there.
 */
export interface ConvergeItem {
  readonly name: string;
  readonly force: boolean;
  readonly takeoverFrom?: string;
}

/** What the election needs from the route writer (agent/routes RouteController fits). */
export interface RouteWriter {
  /** A fenced write for each route (after one describe, unless every route is a takeover); an outcome per route. */
  converge(items: readonly ConvergeItem[], gate: WriteGate, onDone?: (name: string, outcome: RouteWriteOutcome) => void): Promise<unknown>;
  /** onRelease: delete removes the route (fenced) while the key is still held. */
  release(routeName: string, gate: WriteGate): Promise<void>;
}

export interface ExecutorDeps {
  api: ConsulApi;
  cluster: string;
  routes: RouteWriter;
  log: Logger;
  /** Fenced ownership check for one write attempt. */
  verify: (route: string, session: string, lockIndex: number) => Promise<boolean>;
  /** The holder JSON written with an acquire, or with a release (then with when it was acquired). */
  holderValue: (route: string, session: string, lockIndex: number, release?: { reason: ReleaseReason; acquiredAt: number }) => string;
  /** Every outcome, tagged with the action and its id; called once per action. */
  onOutcome: (id: number, action: Action, outcome: Outcome) => void;
}

interface Running {
  readonly id: number;
  readonly action: Action;
  readonly cancel: AbortController;
  /** A mutating call passed the gate: its end is awaited even when cancelled (it may land). */
  sending: boolean;
  settled: boolean;
}

/** Acquire and release answers are awaited this long; past it the outcome is unknown. */
const ACQUIRE_TIMEOUT_MS = 3000;
const RELEASE_TIMEOUT_MS = 2000;

/**
 * Runs the loop's actions against Consul and EC2: at most one action per route, each tagged
 * with an id; every outcome goes back to the loop (which wakes on it), nothing is dropped
 * on the floor and no promise is left unawaited: `idle()` resolves when all have ended.
 * Write actions submitted together go out as one batch (one describe for all their tables).
 */
export class ActionExecutor {
  private readonly running = new Map<string, Running>();
  private readonly tasks = new Set<Promise<void>>();
  private nextId = 1;

  constructor(private readonly deps: ExecutorDeps) {}

  inFlight(route: string): ActionKind | undefined {
    return this.running.get(route)?.action.kind;
  }

  submit(actions: readonly Action[]): void {
    const writes: Running[] = [];
    for (const action of actions) {
      if (this.running.has(action.route)) continue;
      const run: Running = { id: this.nextId++, action, cancel: new AbortController(), sending: false, settled: false };
      this.running.set(action.route, run);
      if (action.kind === "write") writes.push(run);
      else this.track(action.kind === "acquire" ? this.acquire(run, action) : this.release(run, action));
    }
    if (writes.length) this.track(this.write(writes));
  }

  /**
   * Stops a route's write: a write that has not sent anything ends now; one whose EC2 call is
   * out is awaited (bounded by aws.writeTimeout), because that call may still land.
   */
  cancelWrite(route: string): void {
    const run = this.running.get(route);
    if (!run || run.action.kind !== "write" || run.cancel.signal.aborted) return;
    run.cancel.abort();
    if (!run.sending) this.settle(run, { kind: "write", result: "cancelled", detail: "cancelled before sending" });
  }

  /** Resolves when every action started so far has ended. */
  async idle(): Promise<void> {
    while (this.tasks.size) await Promise.allSettled([...this.tasks]);
  }

  private track(task: Promise<void>): void {
    const tracked = task.catch((err: Error) => this.deps.log.error({ err: err.message }, "election action failed unexpectedly")).finally(() => this.tasks.delete(tracked));
    this.tasks.add(tracked);
  }

  private settle(run: Running, outcome: Outcome): void {
    if (run.settled) return;
    run.settled = true;
    if (this.running.get(run.action.route) === run) this.running.delete(run.action.route);
    this.deps.onOutcome(run.id, run.action, outcome);
  }

  private async acquire(run: Running, action: Extract<Action, { kind: "acquire" }>): Promise<void> {
    const { api, cluster } = this.deps;
    const key = routeKey(cluster, action.route);
    try {
      // The value states the expected LockIndex for operators; fencing uses the index read back.
      const ok = await api.acquire(key, action.session, this.deps.holderValue(action.route, action.session, action.expectedLockIndex), ACQUIRE_TIMEOUT_MS);
      const entry = (await api.kvRead(key, { consistent: true })).entries[0];
      if (entry?.session === action.session) return this.settle(run, { kind: "acquire", result: "acquired", lockIndex: entry.lockIndex, modifyIndex: entry.modifyIndex });
      if (ok) return this.settle(run, { kind: "acquire", result: "unknown", detail: "acquired, then the key showed another session" });
      this.settle(run, { kind: "acquire", result: entry?.session ? "heldByOther" : "lockDelay" });
    } catch (err) {
      if (err instanceof SessionNotFoundError) return this.settle(run, { kind: "acquire", result: "sessionInvalid", detail: err.message });
      this.settle(run, { kind: "acquire", result: "unknown", detail: (err as Error).message });
    }
  }

  private async release(run: Running, action: Extract<Action, { kind: "release" }>): Promise<void> {
    const { api, cluster, log } = this.deps;
    try {
      await this.deps.routes.release(action.route, (name) => this.deps.verify(name, action.session, action.lockIndex)).catch((err: Error) => log.warn({ route: action.route, err: err.message }, "route delete on release failed"));
      const key = routeKey(cluster, action.route);
      const ok = await api.release(key, action.session, this.deps.holderValue(action.route, action.session, action.lockIndex, { reason: action.reason, acquiredAt: action.acquiredAt }), RELEASE_TIMEOUT_MS);
      // Read the key back: a snapshot older than this answer still shows our session, and must
      // not be taken for the key being ours again (a false "acquired", a hook fired for nothing).
      const after = await api.kvRead(key).then((r) => r.entries[0], () => undefined);
      const answer = after ? { lockIndex: after.lockIndex, modifyIndex: after.modifyIndex, ...(after.session ? { session: after.session } : {}) } : undefined;
      this.settle(run, { kind: "release", result: ok ? "released" : "notHeld", ...(answer ? { answer } : {}) });
    } catch (err) {
      // An invalidated session holds nothing any more (Behavior release frees its keys).
      if (err instanceof SessionNotFoundError) return this.settle(run, { kind: "release", result: "notHeld", detail: err.message });
      this.settle(run, { kind: "release", result: "unknown", detail: (err as Error).message });
    }
  }

  private async write(batch: Running[]): Promise<void> {
    const byRoute = new Map(batch.map((r) => [r.action.route, r]));
    const gate: WriteGate = async (name) => {
      const run = byRoute.get(name);
      if (!run || run.cancel.signal.aborted || run.action.kind !== "write") return false;
      const ok = await this.deps.verify(name, run.action.session, run.action.lockIndex);
      if (!ok || run.cancel.signal.aborted) return false;
      run.sending = true;
      return true;
    };
    const onDone = (name: string, outcome: RouteWriteOutcome) => {
      const run = byRoute.get(name);
      if (run) this.settle(run, toOutcome(outcome, run.cancel.signal.aborted));
    };
    try {
      await this.deps.routes.converge(
        batch.map((r) => ({ name: r.action.route, force: r.action.kind === "write" && r.action.force, ...(r.action.kind === "write" && r.action.takeoverFrom ? { takeoverFrom: r.action.takeoverFrom } : {}) })),
        gate,
        onDone,
      );
    } finally {
      for (const run of batch) this.settle(run, { kind: "write", result: "transient", detail: "route writer ended without an outcome" });
    }
  }
}

function toOutcome(outcome: RouteWriteOutcome, cancelled: boolean): Outcome {
  if (outcome.ok) {
    const { action, tables, ms } = outcome.result;
    if (action === "skipped-gate") return { kind: "write", result: cancelled ? "cancelled" : "gateClosed", detail: "write gate closed" };
    return { kind: "write", result: "written", action, tables: tables.filter((t) => t.action !== "unchanged").map((t) => `${t.tableId}:${t.action}`), ms };
  }
  return { kind: "write", result: outcome.fatal ? "fatal" : "transient", detail: outcome.message };
}
