import type { EC2Client } from "@aws-sdk/client-ec2";
import type { Clock } from "./clock.js";
import type { Config } from "./config/index.js";
import { fallbackTargetId } from "./config/fallback.js";
import type { ConsulApi } from "./consul/index.js";
import { Election, type ElectionListener } from "./election/index.js";
import { fallbackRoutes } from "./election/fallback.js";
import type { Identity } from "./identity/index.js";
import type { Logger } from "./observe/log.js";
import { FallbackPolicy, type CandidateHealth } from "./policy/fallback.js";
import { RouteController } from "./routes/index.js";

export interface FallbackWriterDeps {
  api: ConsulApi;
  ec2: EC2Client;
  identity: Identity;
  clock: Clock;
  log: Logger;
  dryRun: boolean;
  serviceId: string;
  checkId: (checkName: string) => string;
  /** The main election (its liveness heartbeat is shared) and its route controller (its resolved tables are reused). */
  main: { election: Election; routes: RouteController };
  health: CandidateHealth;
  /** Every event of the fallback election (metrics, EMF, route-moved events). */
  listeners: readonly ElectionListener[];
}

/** The configuration the fallback election runs: the routes with a fallback, bound to no check, written to the fallback. */
export function fallbackConfig(config: Config): Config {
  return { ...config, routes: fallbackRoutes(config), sourceDestCheck: "ignore" };
}

/**
 * The agent's fallback writer (issue #17): a second election over the routes that name a
 * fallback, under a session bound to liveness only, whose holder points the route at the
 * fallback (see agent/election/fallback.ts for when it contends and when it hands back). It
 * exists only while some route names a fallback; a reload that adds the first one starts it.
 */
export class FallbackWriter {
  private election: Election | undefined;
  private controller: RouteController | undefined;
  private policy: FallbackPolicy | undefined;
  private started: Promise<void> | undefined;
  private draining = false;
  private readonly log: Logger;

  constructor(
    private config: Config,
    private readonly deps: FallbackWriterDeps,
  ) {
    this.log = deps.log.child({ role: "fallback" });
  }

  /** Starts the fallback election when some route names a fallback. */
  start(): Promise<void> {
    const fc = fallbackConfig(this.config);
    if (fc.routes.length === 0 || this.started) return this.started ?? Promise.resolve();
    const { api, ec2, identity, clock, dryRun, serviceId, checkId, main } = this.deps;
    this.controller = new RouteController({ ec2, config: fc, identity, log: this.log, dryRun, toFallback: true });
    this.controller.applyConfig(fc, this.tables(fc));
    this.policy = new FallbackPolicy(fc, this.deps.health, this.log);
    const election = new Election({
      api,
      config: fc,
      identity,
      clock,
      log: this.log,
      routes: this.controller,
      health: { allPassing: () => true },
      serviceId,
      checkId,
      policy: this.policy,
      sharedLiveness: () => main.election.livenessPassedAt(),
      fallbackTarget: (route) => fallbackTargetId(this.config.routes.find((r) => r.name === route) ?? {}),
    });
    for (const listener of this.deps.listeners) election.on(listener);
    // A candidate turning healthy (or not) changes what the fallback may do: decide at once.
    this.deps.health.onChange?.(() => election.wake());
    this.election = election;
    this.log.info({ step: "fallback", routes: fc.routes.map((r) => ({ route: r.name, fallback: fallbackTargetId(r) })) }, "fallback writer started");
    this.started = election.start().then(() => (this.draining ? election.setDraining(true, "drain", 0) : undefined));
    return this.started;
  }

  /** A reload applied: the fallback routes follow the new configuration (the first fallback starts the writer). */
  reconfigure(config: Config): void {
    this.config = config;
    const fc = fallbackConfig(config);
    if (!this.election) {
      void this.start().catch((err: Error) => this.log.error({ step: "fallback", err: err.message }, "fallback writer could not start"));
      return;
    }
    this.controller?.applyConfig(fc, this.tables(fc));
    this.policy?.reconfigure(fc);
    this.election.reconfigure(fc);
  }

  /** Drain with the node: a draining node holds nothing, not even for the fallback. */
  async setDraining(on: boolean): Promise<void> {
    this.draining = on;
    await this.election?.setDraining(on, "drain", 5000);
  }

  /** The fallback holds released, before the main election stops (its session and heartbeat go last). */
  async stop(): Promise<void> {
    if (!this.election) return;
    await this.started?.catch(() => undefined);
    await this.election.stop("shutdown", 0);
  }

  private tables(fc: Config): Map<string, string[]> {
    return new Map(fc.routes.map((r) => [r.name, [...this.deps.main.routes.tablesOf(r.name)]]));
  }
}
