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
  /** What the node holds and why it holds nothing, for the liveness check's output. */
  summary: () => string;
}

/**
 * The only owner of this node's Consul sessions (one per check set) and of the liveness
 * heartbeat they are bound to: the two facts the local lease is computed from.
 */
export class Sessions {
  private readonly keepers = new Map<string, SessionKeeper>();
  private lastLivenessPassAt = 0;

  constructor(private readonly deps: SessionsDeps) {
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
          onChange: () => deps.onChange(),
        }),
      );
    }
  }

  /** The live session of the route's check set, if any. */
  sessionFor(route: RouteConfig): string | undefined {
    return this.keepers.get(checkSetKey(route.checks))?.current;
  }

  all(): string[] {
    return [...this.keepers.values()].map((k) => k.current).filter((s): s is string => !!s);
  }

  /** The local lease deadline (monotonic ms): no write starts after it. */
  leaseDeadline(session: string): number {
    const keeper = [...this.keepers.values()].find((k) => k.current === session);
    const { sessionTtl, livenessTtl, fenceMargin } = this.deps.config.election;
    return leaseDeadline({ lastRenewAt: keeper?.lastRenewAt ?? 0, sessionTtlMs: sessionTtl, lastLivenessPassAt: this.lastLivenessPassAt, livenessTtlMs: livenessTtl, marginMs: fenceMargin });
  }

  /** An acquire found the session gone: its keeper recreates it. */
  invalidate(session: string): void {
    for (const keeper of this.keepers.values()) keeper.invalidate(session);
  }

  /** Passes liveness once (sessions bind it: it must pass before one can be created). */
  async passLiveness(): Promise<void> {
    const started = this.deps.clock.now();
    await this.deps.api.updateTtlCheck(livenessCheckId(this.deps.serviceId), "passing", `routeleader ${VERSION} alive; ${this.deps.summary()}`, 1000);
    this.lastLivenessPassAt = started;
  }

  /** The heartbeat and every keeper, until the signal aborts. */
  run(signal: AbortSignal): Promise<void>[] {
    return [this.livenessLoop(signal), ...[...this.keepers.values()].map((k) => k.run(signal))];
  }

  /** Fails liveness and destroys every session: call only after the keys were released. */
  async close(): Promise<void> {
    await this.deps.api.updateTtlCheck(livenessCheckId(this.deps.serviceId), "critical", "routeleader stopping").catch(() => undefined);
    await Promise.all([...this.keepers.values()].map((k) => k.destroy()));
  }

  private async livenessLoop(signal: AbortSignal): Promise<void> {
    const interval = this.deps.config.election.livenessTtl / 3;
    while (!signal.aborted) {
      await this.deps.clock.sleep(interval, signal).catch(() => undefined);
      if (signal.aborted) break;
      await this.passLiveness().catch((err: Error) => this.deps.log.warn({ step: "liveness", err: err.message }, "liveness heartbeat failed"));
    }
  }
}
