import type { EC2Client } from "@aws-sdk/client-ec2";
import type { Clock } from "./clock.js";
import { ConfigError, configWarnings, diffConfig, loadConfig, type Config, type ConfigChange } from "./config/index.js";
import type { ConsulApi } from "./consul/index.js";
import type { Election } from "./election/index.js";
import { ExitError } from "./exit-codes.js";
import { checkConsulId, checkTtlMs, type HealthMonitor } from "./health/index.js";
import type { HookRunner } from "./hooks/index.js";
import type { Metrics } from "./observe/metrics.js";
import type { Logger } from "./observe/log.js";
import { resolvePreferredAzs, type FailoverPolicy } from "./policy/index.js";
import type { RouteController } from "./routes/controller.js";

export type ReloadTrigger = "SIGHUP" | "http";

/** What one reload did: the answer of POST /reload, the last one shown in /status. */
export interface ReloadOutcome {
  outcome: "applied" | "unchanged" | "refused";
  /** The file the agent re-read: always the one it was started with. */
  source: string;
  trigger: ReloadTrigger;
  at: string;
  /** One line for logs and the Consul liveness output. */
  message: string;
  changes: { path: string; kind: ConfigChange["kind"]; message: string }[];
  /** Why it was refused, in the words of `routeleader validate` (file, line, path, problem). */
  problems?: string;
  /** Applied, but still under way when the answer was sent (routes being released, checks waiting to be deregistered). */
  pending?: string[];
  /** Parts of an applied reload that did not take (e.g. Consul refused a check's re-registration). */
  warnings?: string[];
}

export interface ReloaderDeps {
  config: Config;
  log: Logger;
  clock: Clock;
  /** `--log-level` was given: the file's logLevel does not override it. */
  logLevelFixed: boolean;
  api: ConsulApi;
  ec2: EC2Client;
  serviceId: string;
  routes: RouteController;
  health: HealthMonitor;
  election: Election;
  /** The fallback writer follows the routes' fallbacks (a first fallback starts it). */
  fallback?: { reconfigure(config: Config): void };
  policy: FailoverPolicy;
  hooks: HookRunner;
  /** The map the policy reads each route's preferred AZ from; refilled on reload. */
  preferredAz: Map<string, string | undefined>;
  metrics: Metrics;
}

/** How long a reload's answer waits for removed routes to be released and dropped. */
const ANSWER_WAIT_MS = 10_000;

/**
 * `routeleader reload` and SIGHUP: re-reads the agent's own configuration file, validates it
 * with the code of `routeleader validate`, refuses it whole (the agent keeps running on the
 * old one) when it is invalid, changes a setting that cannot change live, or names tables it
 * cannot resolve; else applies it without a restart. Reloads run one at a time.
 */
export class Reloader {
  private current: Config;
  private loadedAt = new Date();
  private last: ReloadOutcome | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly finishing = new Set<Promise<void>>();
  private readonly stopping = new AbortController();

  constructor(private readonly deps: ReloaderDeps) {
    this.current = deps.config;
  }

  get config(): Config {
    return this.current;
  }

  /** For /status. */
  status(): { source: string; loadedAt: string; routes: string[]; checks: string[]; lastReload: ReloadOutcome | null } {
    return { source: this.current.source, loadedAt: this.loadedAt.toISOString(), routes: this.current.routes.map((r) => r.name), checks: Object.keys(this.current.checks), lastReload: this.last ?? null };
  }

  reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const run = this.queue.then(() => this.reloadNow(trigger));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Waits for the background part of applied reloads (bounded by the agent's stop). */
  async close(): Promise<void> {
    this.stopping.abort();
    await Promise.allSettled([...this.finishing]);
  }

  private async reloadNow(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const { log, metrics, election } = this.deps;
    const started = this.deps.clock.now();
    const file = this.current.source;
    const at = new Date().toISOString();
    const refuse = (problems: string, changes: ReloadOutcome["changes"] = []): ReloadOutcome => {
      const outcome: ReloadOutcome = { outcome: "refused", source: file, trigger, at, message: `reload refused, still running the configuration loaded at ${this.loadedAt.toISOString()}: ${problems.split("\n").slice(1).map((l) => l.trim()).join("; ") || problems}`, changes, problems };
      log.error({ step: "reload", trigger, source: file, outcome: "refused", problems, event: "reloadRefused" }, `configuration reload refused: ${problems}`);
      metrics.recordReload("refused");
      election.noteReload(`last reload refused at ${at} (see the log or /status)`);
      this.last = outcome;
      return outcome;
    };

    let next: Config;
    try {
      next = loadConfig(file);
    } catch (err) {
      if (err instanceof ConfigError) return refuse(err.message);
      throw err;
    }
    for (const w of configWarnings(next)) log.warn({ step: "config", path: w.path, line: w.line }, `config warning: ${w.message}`);
    const diff = diffConfig(this.current, next);
    const changes = diff.changes.map((c) => ({ path: c.path, kind: c.kind, message: c.message }));
    if (diff.refused.length) {
      return refuse(new ConfigError(file, diff.refused.map((c) => ({ path: c.path, message: c.message }))).message, changes);
    }
    if (!changes.length) {
      const outcome: ReloadOutcome = { outcome: "unchanged", source: file, trigger, at, message: "configuration unchanged", changes };
      log.info({ step: "reload", trigger, source: file, outcome: "unchanged", event: "reloaded" }, "configuration reloaded: nothing changed");
      metrics.recordReload("applied");
      election.noteReload(undefined);
      this.loadedAt = new Date();
      this.last = outcome;
      return outcome;
    }

    // Reads before writes: the new routes' tables and preferred AZs, in this VPC only.
    let tables: Map<string, string[]>;
    let azs: Map<string, string | undefined>;
    try {
      tables = await this.deps.routes.planTables(next);
      azs = await resolvePreferredAzs(next.routes, (r) => tables.get(r) ?? [], this.deps.ec2, log);
    } catch (err) {
      if (err instanceof ExitError) return refuse(`${file}: ${err.message}`, changes);
      throw err;
    }

    // The one write that may be refused comes first: the added checks' registration.
    const { api, serviceId, health } = this.deps;
    const registered: string[] = [];
    try {
      for (const name of diff.checks.added) {
        const check = next.checks[name]!;
        await api.registerCheck({ id: checkConsulId(serviceId, name), name: `${name} (${check.type})`, serviceId, ttlMs: checkTtlMs(check), status: "critical" });
        registered.push(name);
      }
    } catch (err) {
      await Promise.allSettled(registered.map((n) => api.deregisterCheck(checkConsulId(serviceId, n))));
      return refuse(`${file}: Consul refused to register a new check: ${(err as Error).message}`, changes);
    }

    // From here on the reload is applied.
    const warnings: string[] = [];
    for (const name of diff.checks.added) health.setCheck(name, next.checks[name]!);
    for (const name of diff.checks.changed) {
      const check = next.checks[name]!;
      try {
        // Re-registered with the status it has now: a passing check stays passing, so no session bound to it is invalidated.
        await health.replaceCheck(name, check, (status) => api.registerCheck({ id: checkConsulId(serviceId, name), name: `${name} (${check.type})`, serviceId, ttlMs: checkTtlMs(check), status }));
      } catch (err) {
        warnings.push(`checks.${name}: not changed, Consul refused its re-registration: ${(err as Error).message}`);
      }
    }
    this.deps.routes.applyConfig(next, tables);
    this.deps.preferredAz.clear();
    for (const [route, az] of azs) this.deps.preferredAz.set(route, az);
    this.deps.policy.reconfigure(next);
    this.deps.hooks.reconfigure(next.hooks, next.routes);
    if (!this.deps.logLevelFixed && next.logLevel !== this.current.logLevel) log.level = next.logLevel;
    if (next.sourceDestCheck !== this.current.sourceDestCheck) await this.deps.routes.applySourceDestCheckMode().catch((err: Error) => warnings.push(`sourceDestCheck: ${err.message}`));
    election.reconfigure(next);
    this.deps.fallback?.reconfigure(next);
    this.current = next;
    this.loadedAt = new Date();

    const finish = this.finish(diff.routes.removed, diff.checks.removed.filter((c) => !(c in next.checks)));
    this.finishing.add(finish);
    void finish.finally(() => this.finishing.delete(finish));
    const done = await Promise.race([finish.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ANSWER_WAIT_MS).unref())]);
    const pending = done ? [] : [...diff.routes.removed.filter((r) => election.routeStates().some((s) => s.route === r)).map((r) => `routes[${r}]: still being released`), ...diff.checks.removed.map((c) => `checks.${c}: deregistered once no session is bound to it`)];
    const outcome: ReloadOutcome = {
      outcome: "applied",
      source: file,
      trigger,
      at,
      message: `configuration reloaded: ${changes.map((c) => c.path).join(", ")}`,
      changes,
      ...(pending.length ? { pending } : {}),
      ...(warnings.length ? { warnings } : {}),
    };
    log.info({ step: "reload", trigger, source: file, outcome: "applied", changes, pending, warnings, routes: next.routes.map((r) => r.name), ms: Math.round(this.deps.clock.now() - started), event: "reloaded" }, outcome.message);
    for (const w of warnings) log.error({ step: "reload", warning: w }, w);
    metrics.recordReload("applied");
    election.noteReload(warnings.length ? `last reload applied with warnings at ${at}` : undefined);
    this.last = outcome;
    return outcome;
  }

  /** Removed routes: released (by the election), then dropped; removed checks: deregistered once no session is bound to them. */
  private async finish(removedRoutes: string[], removedChecks: string[]): Promise<void> {
    const { election, routes, health, api, serviceId, log } = this.deps;
    const signal = this.stopping.signal;
    if (removedRoutes.length) {
      await election.whenDropped(removedRoutes, signal);
      if (signal.aborted) return;
      routes.forget(removedRoutes.filter((r) => !this.current.routes.some((c) => c.name === r)));
    }
    if (removedChecks.length) {
      const ids = removedChecks.map((c) => checkConsulId(serviceId, c));
      await election.whenUnbound(ids, signal);
      if (signal.aborted) return;
      for (const name of removedChecks) {
        if (name in this.current.checks) continue;
        await health.removeCheck(name);
        await api.deregisterCheck(checkConsulId(serviceId, name)).catch((err: Error) => log.warn({ step: "reload", check: name, err: err.message }, "could not deregister a removed check"));
        log.info({ step: "reload", check: name }, `check ${name} removed`);
      }
    }
  }
}
