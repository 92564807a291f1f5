import { systemClock, type Clock } from "../clock.js";
import type { CheckConfig } from "../config/schema.js";
import type { CheckStatus, ConsulApi } from "../consul/client.js";
import type { Logger } from "../observe/log.js";
import { processMetrics, type CallRecorder } from "../observe/metrics.js";
import { describeCounters, initialHysteresis, step, type Hysteresis } from "./hysteresis.js";
import type { CheckResult } from "./result.js";
import { createCheckRunner, type CheckRunner } from "./run.js";

/** What the rest of the agent sees of one named check. */
export interface CheckState {
  name: string;
  /** The verdict after rise/fall: true only after `rise` consecutive passes. */
  passing: boolean;
  /** The sentence published to Consul: name, counters, target, result, latency. */
  output: string;
  consecutiveOk: number;
  consecutiveFail: number;
  /** Clock time (ms) of the last completed run; absent before the first. */
  lastRunAt?: number;
  /** The status last handed to Consul (critical until the first rise). */
  consulStatus: CheckStatus;
  lastLatencyMs?: number;
}

/** The Consul id of a check's TTL check; the agent registers it and binds sessions to it. */
export function checkConsulId(serviceId: string, checkName: string): string {
  return `${serviceId}:check:${checkName}`;
}

/**
 * Floor of a check's Consul TTL. The TTL only catches an agent that stopped, and the liveness
 * check (TTL election.livenessTtl, bound to every session, passed every livenessTtl/3) catches
 * that first; a change of status is published at once. So a long TTL costs no failover time,
 * and a refresh every 10 s instead of every 1–2 s saves a Consul request per check per second
 * or two on an idle agent (issue #16).
 */
export const CHECK_TTL_FLOOR_MS = 30_000;

/**
 * The Consul TTL of a check: three times (every + timeout), at least `floorMs`. The monitor
 * re-publishes every TTL/3 from a loop of its own, so a live agent always refreshes before the
 * TTL lapses, however long a run hangs.
 */
export function checkTtlMs(check: CheckConfig, floorMs = CHECK_TTL_FLOOR_MS): number {
  return Math.max(floorMs, 3 * (check.every + check.timeout));
}

/** How long `beforeFail` may take before the failing status is published anyway. */
export const DEFAULT_BEFORE_FAIL_TIMEOUT_MS = 5_000;
/** Timeout of one TTL-check update against the local Consul agent. */
const PUBLISH_TIMEOUT_MS = 2_000;

export interface HealthMonitorDeps {
  checks: Record<string, CheckConfig>;
  consul: ConsulApi;
  serviceId: string;
  log: Logger;
  clock?: Clock;
  /**
   * Awaited BEFORE a failing status is published to Consul: the agent releases the routes that
   * use the check first, because a critical check invalidates the session and imposes
   * lock-delay on keys still held. Bounded by `beforeFailTimeoutMs`; an error is logged and
   * the failing status is published anyway.
   */
  beforeFail: (checkName: string) => Promise<void>;
  /** Called after a check turns passing (after publishing passing). */
  onPass?: (checkName: string) => void;
  /** Optional, defaults to DEFAULT_BEFORE_FAIL_TIMEOUT_MS. */
  beforeFailTimeoutMs?: number;
  /** Optional, defaults to createCheckRunner() (the real runners). */
  runner?: CheckRunner;
  /**
   * Where every run is recorded (check_passing: the rise/fall verdict, check_latency_seconds)
   * and errors (errors_total{component="health"}: a check that could not run, a beforeFail
   * that failed or timed out). Default: the process's metrics.
   */
  metrics?: CallRecorder;
  /** Floor of the checks' Consul TTL; default CHECK_TTL_FLOOR_MS (tests of the lapse use less). */
  checkTtlFloorMs?: number;
}

interface Entry {
  readonly name: string;
  readonly check: CheckConfig;
  readonly consulId: string;
  readonly ttlMs: number;
  hysteresis: Hysteresis;
  /** What others see; lags the hysteresis on a rise (until Consul shows passing), not on a fall. */
  passing: boolean;
  /** What Consul is told; lags the hysteresis on a fall (until beforeFail has finished). */
  consulStatus: CheckStatus;
  output: string;
  lastLatencyMs?: number;
  /** Updates of this check, in order: a refresh may never overtake a newer status. */
  publishing: Promise<void>;
  /** Its run and refresh loops, and what stops them (a reload replaces or removes one check). */
  loops: Promise<void>[];
  stop?: AbortController;
}

/**
 * Runs every configured check on its own schedule, keeps its rise/fall verdict, and publishes
 * it to Consul as a TTL check of the node's service.
 *
 * Ordering guarantees: on a fall, `passing` turns false at once (so no new contention starts),
 * then `beforeFail` is awaited, and only then does Consul see critical. On a rise, Consul is
 * told passing first, then `passing` turns true and `onPass` runs. Does not guarantee Consul's
 * servers have synced the status when `whenPassing` resolves: session creation must retry.
 */
export class HealthMonitor {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: Clock;
  private readonly runner: CheckRunner;
  private readonly metrics: CallRecorder;
  private readonly waiters = new Set<() => void>();
  private controller: AbortController | undefined;
  private stopping: Promise<void> | undefined;

  constructor(private readonly deps: HealthMonitorDeps) {
    this.clock = deps.clock ?? systemClock;
    this.runner = deps.runner ?? createCheckRunner();
    this.metrics = deps.metrics ?? processMetrics;
    for (const [name, check] of Object.entries(deps.checks)) this.entries.set(name, this.newEntry(name, check));
  }

  private newEntry(name: string, check: CheckConfig): Entry {
    const hysteresis = initialHysteresis(check);
    return {
      name,
      check,
      consulId: checkConsulId(this.deps.serviceId, name),
      ttlMs: checkTtlMs(check, this.deps.checkTtlFloorMs),
      hysteresis,
      passing: false,
      consulStatus: "critical",
      output: `${name}: ${describeCounters(hysteresis)}`,
      publishing: Promise.resolve(),
      loops: [],
    };
  }

  start(): void {
    if (this.controller) return;
    this.controller = new AbortController();
    for (const entry of this.entries.values()) this.startEntry(entry);
  }

  private startEntry(entry: Entry): void {
    if (!this.controller || this.stopping) return;
    const stop = new AbortController();
    const signal = AbortSignal.any([this.controller.signal, stop.signal]);
    entry.stop = stop;
    entry.loops = [this.runLoop(entry, signal), this.refreshLoop(entry, signal)];
  }

  /** Stops one check's schedule and waits for its run and updates in flight. */
  private async stopEntry(entry: Entry): Promise<void> {
    entry.stop?.abort(new Error("check reconfigured"));
    await Promise.allSettled(entry.loops);
    await entry.publishing;
  }

  /** A reload added a check (its Consul TTL check is registered, critical): it runs from now on and passes after `rise`. */
  setCheck(name: string, check: CheckConfig): void {
    if (this.entries.has(name)) throw new Error(`check ${name} already exists: use replaceCheck`);
    const entry = this.newEntry(name, check);
    this.entries.set(name, entry);
    this.startEntry(entry);
  }

  /**
   * A reload changed a check's definition. Its schedule stops, `register` re-registers it in
   * Consul with the status it has now (a passing check stays passing: no session bound to it
   * is invalidated, no lock-delay), and it runs again with the new definition, keeping its
   * verdict and counters: a holder keeps its routes unless the new definition fails `fall`
   * times. When `register` throws, the old definition runs on and the error is rethrown.
   */
  async replaceCheck(name: string, check: CheckConfig, register: (status: CheckStatus) => Promise<void>): Promise<void> {
    const old = this.entries.get(name);
    if (!old) return this.setCheck(name, check);
    await this.stopEntry(old);
    try {
      await register(old.consulStatus);
    } catch (err) {
      this.startEntry(old);
      throw err;
    }
    const entry: Entry = { ...this.newEntry(name, check), hysteresis: { ...old.hysteresis, rise: check.rise, fall: check.fall }, passing: old.passing, consulStatus: old.consulStatus, output: old.output };
    if (old.lastLatencyMs !== undefined) entry.lastLatencyMs = old.lastLatencyMs;
    this.entries.set(name, entry);
    this.startEntry(entry);
    this.deps.log.info({ check: name, passing: entry.passing, ttlMs: entry.ttlMs }, `check ${name} re-registered with its new definition; verdict kept (${entry.passing ? "passing" : "not passing"})`);
  }

  /** A reload removed a check (no session is bound to it any more): its schedule stops; the caller deregisters it. */
  async removeCheck(name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) return;
    await this.stopEntry(entry);
    this.entries.delete(name);
  }

  /** Stops every schedule and waits for runs and updates in flight. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.controller?.abort(new Error("health monitor stopped"));
      await Promise.allSettled([...this.entries.values()].flatMap((e) => e.loops));
      await Promise.allSettled([...this.entries.values()].map((e) => e.publishing));
    })();
    return this.stopping;
  }

  state(name: string): CheckState | undefined {
    const entry = this.entries.get(name);
    return entry && this.snapshot(entry);
  }

  states(): CheckState[] {
    return [...this.entries.values()].map((e) => this.snapshot(e));
  }

  allPassing(names: readonly string[]): boolean {
    return names.every((n) => this.entries.get(n)?.passing === true);
  }

  whenPassing(names: readonly string[], signal?: AbortSignal): Promise<void> {
    const unknown = names.filter((n) => !this.entries.has(n));
    if (unknown.length) return Promise.reject(new Error(`whenPassing: unknown check(s) ${unknown.join(", ")} (defined: ${[...this.entries.keys()].join(", ") || "none"})`));
    return new Promise((resolve) => {
      const test = () => {
        if (!signal?.aborted && !this.allPassing(names)) return;
        this.waiters.delete(test);
        signal?.removeEventListener("abort", test);
        resolve();
      };
      this.waiters.add(test);
      signal?.addEventListener("abort", test, { once: true });
      test();
    });
  }

  private snapshot(e: Entry): CheckState {
    return {
      name: e.name,
      passing: e.passing,
      output: e.output,
      consecutiveOk: e.hysteresis.consecutiveOk,
      consecutiveFail: e.hysteresis.consecutiveFail,
      ...(e.hysteresis.lastRunAt !== undefined ? { lastRunAt: e.hysteresis.lastRunAt } : {}),
      consulStatus: e.consulStatus,
      ...(e.lastLatencyMs !== undefined ? { lastLatencyMs: e.lastLatencyMs } : {}),
    };
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  private async runLoop(entry: Entry, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const startedAt = this.clock.now();
      const result = await this.runner(entry.check, signal).catch((err: unknown): CheckResult => {
        if (!signal.aborted) this.metrics.recordError("health");
        return { ok: false, output: `${entry.check.type} check failed to run: ${(err as Error).message}`, latencyMs: 0 };
      });
      if (signal.aborted) return;
      await this.record(entry, result);
      await this.sleep(Math.max(0, startedAt + entry.check.every - this.clock.now()), signal);
    }
  }

  /** Keeps Consul's TTL from lapsing however long a run or a beforeFail takes. */
  private async refreshLoop(entry: Entry, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.sleep(entry.ttlMs / 3, signal);
      if (signal.aborted) return;
      await this.publish(entry);
    }
  }

  private async record(entry: Entry, result: CheckResult): Promise<void> {
    const before = entry.hysteresis;
    const after = step(before, result, this.clock.now());
    entry.hysteresis = after;
    entry.lastLatencyMs = result.latencyMs;
    entry.output = `${entry.name}: ${describeCounters(after)} — ${result.output}`;
    // The verdict after rise/fall, as the agent acts on it (a fall counts at once, before the release).
    this.metrics.recordCheck(entry.name, after.passing, result.latencyMs);
    const { log } = this.deps;
    if (!before.passing && after.passing) {
      entry.consulStatus = "passing";
      await this.publish(entry);
      entry.passing = true;
      log.info({ check: entry.name, output: entry.output }, "health check passing");
      this.notify();
      this.deps.onPass?.(entry.name);
    } else if (before.passing && !after.passing) {
      entry.passing = false;
      log.warn({ check: entry.name, output: entry.output }, "health check failing: releasing its routes before Consul sees it critical");
      this.notify();
      await this.beforeFail(entry.name);
      entry.consulStatus = "critical";
      await this.publish(entry);
    } else {
      // Unchanged: the refresh loop carries the TTL and the latest output to Consul every
      // TTL/3. A publish per run was a Consul request per check per second (issue #16).
      log.debug({ check: entry.name, output: entry.output }, "health check ran");
    }
  }

  private async beforeFail(name: string): Promise<void> {
    const timeoutMs = this.deps.beforeFailTimeoutMs ?? DEFAULT_BEFORE_FAIL_TIMEOUT_MS;
    const timer = new AbortController();
    const started = this.clock.now();
    const outcome = await Promise.race([
      this.deps.beforeFail(name).then(
        () => "done" as const,
        (err: unknown) => err as Error,
      ),
      this.sleep(timeoutMs, timer.signal).then(() => "timeout" as const),
    ]);
    timer.abort();
    if (outcome !== "done") this.metrics.recordError("health");
    if (outcome === "timeout") this.deps.log.error({ check: name, timeoutMs }, "beforeFail did not finish in time: publishing critical anyway");
    else if (outcome instanceof Error) this.deps.log.error({ check: name, err: outcome }, "beforeFail failed: publishing critical anyway");
    else this.deps.log.info({ check: name, ms: Math.round(this.clock.now() - started) }, "routes released before failing the check");
  }

  private publish(entry: Entry): Promise<void> {
    entry.publishing = entry.publishing.then(() =>
      this.deps.consul.updateTtlCheck(entry.consulId, entry.consulStatus, entry.output, PUBLISH_TIMEOUT_MS).catch((err: unknown) => {
        this.deps.log.warn({ check: entry.name, checkId: entry.consulId, err: (err as Error).message }, "could not update the check in Consul");
      }),
    );
    return entry.publishing;
  }

  /** clock.sleep rejects on abort; loops only need to wake up and look at the signal. */
  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return this.clock.sleep(ms, signal).catch(() => undefined);
  }
}
