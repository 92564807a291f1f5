import { appendFileSync } from "node:fs";
import type { ElectionEvent, ElectionListener } from "../election/events.js";
import { emfLine, type EmfMetric, type EmfRecord } from "./emf-format.js";

/**
 * CloudWatch metrics in embedded metric format (EMF), opt-in with `observe.cloudwatch.emf`.
 * Election events become one JSON line each (holder changes and failover time, route writes and
 * their latency, write failures and refusals, routes given up), and once a minute a heartbeat
 * line tells the state: this agent is up, how many routes it holds, how many routes have no
 * holder as it sees them, failing checks, and the smallest lease margin of its held routes.
 * Any log shipper that gets these lines into CloudWatch Logs turns them into metrics; nothing
 * has to understand more than EMF. Dimensions: Cluster (every metric), Route (holder changes
 * and failover time, also per route), Check (check state per check). The instance id and AZ
 * are properties of every line (Logs Insights can group by them) but not dimensions, so the
 * metric count does not grow with instance replacements.
 *
 * Metric names (namespace `observe.cloudwatch.namespace`, default routeleader):
 *   event lines:  HolderChanges, FailoverMs, RoutesReleased, RoutesLost, RouteWrites,
 *                 RouteWriteLatency, RouteWriteFailures, RouteWritesRefused, RoutesGivenUp
 *   heartbeat:    AgentUp (1 per agent per minute: Sum = agents up), RoutesHeld,
 *                 RoutesWithoutHolder, ChecksFailing, LeaseMarginMs (only while holding);
 *                 CheckPassing per Check
 */

export interface EmfSettings {
  emf: boolean;
  namespace: string;
  output: string;
}

/** What the emitter reads for its heartbeat: the election and the health monitor fit as they are. */
export interface EmfElection {
  on(listener: ElectionListener): void;
  heldRoutes(): readonly string[];
  routeStates(): readonly { route: string; phase: string; held?: { session: string } | undefined }[];
  leaseDeadline(session: string): number;
}
export interface EmfHealth {
  states(): readonly { name: string; passing: boolean }[];
}

export interface EmfOptions {
  settings: EmfSettings;
  cluster: string;
  instanceId: string;
  az: string;
  /** Every configured route name. */
  routes: readonly string[];
  clock: { now(): number; wallNow(): number };
  /** Default: observe.cloudwatch.output (stdout, or appended to a file). */
  write?: (line: string) => void;
  /** For the heartbeat; without them it says only AgentUp and what events told. */
  election?: Pick<EmfElection, "heldRoutes" | "routeStates" | "leaseDeadline">;
  health?: EmfHealth;
  /** Errors writing a line (a full disk): reported, never thrown into the election. */
  onError?: (err: Error) => void;
}

export interface EmfEmitter {
  /** Subscribe it to the election's events. */
  readonly listener: ElectionListener;
  /** Writes the heartbeat now (the timer calls this once a minute). */
  heartbeat(): void;
}

function writerFor(output: string): (line: string) => void {
  if (output === "stdout") return (line) => void process.stdout.write(`${line}\n`);
  return (line) => appendFileSync(output, `${line}\n`, { mode: 0o640 });
}

const BY_ROUTE = [["Cluster"], ["Cluster", "Route"]] as const;

export function createEmfEmitter(o: EmfOptions): EmfEmitter {
  const write = o.write ?? writerFor(o.settings.output);
  /** Route -> whether the key has a holder, from leaderChanged (every route reports once at start). */
  const hasHolder = new Map<string, boolean>();
  const properties = { instanceId: o.instanceId, az: o.az };

  const emit = (metrics: EmfMetric[], extra: { route?: string; check?: string; properties?: Record<string, unknown> } = {}) => {
    const dimensions: Record<string, string> = { Cluster: o.cluster };
    let sets: EmfRecord["dimensionSets"] = [["Cluster"]];
    if (extra.route !== undefined) {
      dimensions.Route = extra.route;
      sets = BY_ROUTE;
    }
    if (extra.check !== undefined) {
      dimensions.Check = extra.check;
      sets = [["Cluster", "Check"]];
    }
    try {
      write(emfLine({ namespace: o.settings.namespace, timestamp: o.clock.wallNow(), dimensions, dimensionSets: sets, metrics, properties: { ...properties, ...(extra.properties ?? {}) } }));
    } catch (err) {
      o.onError?.(err as Error);
    }
  };
  const count = (name: string): EmfMetric => ({ name, unit: "Count", value: 1 });

  const listener: ElectionListener = (event: ElectionEvent) => {
    switch (event.type) {
      case "leaderChanged":
        hasHolder.set(event.route, !!event.holder && !event.holder.releasedAt);
        break;
      case "acquired":
        hasHolder.set(event.route, true);
        // A holder change: the route had a holder before (another instance, or a released key).
        emit([count("HolderChanges"), { name: "FailoverMs", unit: "Milliseconds", value: Math.max(0, Math.round(event.waitedMs)) }], {
          route: event.route,
          properties: { event: "acquired", lockIndex: event.lockIndex, previousHolder: event.previousHolder ?? null, route: event.route },
        });
        break;
      case "released":
        emit([count("RoutesReleased")], { properties: { event: "released", route: event.route, reason: event.reason, heldMs: Math.round(event.heldMs) } });
        break;
      case "lost":
        emit([count("RoutesLost")], { properties: { event: "lost", route: event.route, reason: event.reason, newHolder: event.newHolder ?? null } });
        break;
      case "routeWritten":
        emit([count("RouteWrites"), { name: "RouteWriteLatency", unit: "Milliseconds", value: Math.max(0, Math.round(event.ms)) }], {
          properties: { event: "routeWritten", route: event.route, action: event.action, tables: event.tables },
        });
        break;
      case "writeFailed":
        emit([count("RouteWriteFailures")], { properties: { event: "writeFailed", route: event.route, fatal: event.fatal, reason: event.reason } });
        break;
      case "writeRefused":
        emit([count("RouteWritesRefused")], { properties: { event: "writeRefused", route: event.route, reason: event.reason } });
        break;
      case "blocked":
        emit([count("RoutesGivenUp")], { properties: { event: "blocked", route: event.route, reason: event.reason, forMs: Math.round(event.forMs) } });
        break;
    }
  };

  const heartbeat = () => {
    const held = o.election?.heldRoutes() ?? [];
    const withoutHolder = o.routes.filter((r) => hasHolder.get(r) === false).length;
    const checks = o.health?.states() ?? [];
    const metrics: EmfMetric[] = [
      { name: "AgentUp", unit: "Count", value: 1 },
      { name: "RoutesHeld", unit: "Count", value: held.length },
      { name: "RoutesWithoutHolder", unit: "Count", value: withoutHolder },
      { name: "ChecksFailing", unit: "Count", value: checks.filter((c) => !c.passing).length },
    ];
    if (o.election) {
      const now = o.clock.now();
      const margins = o.election
        .routeStates()
        .filter((s) => s.phase === "holding" && s.held)
        .map((s) => o.election!.leaseDeadline(s.held!.session) - now);
      if (margins.length) metrics.push({ name: "LeaseMarginMs", unit: "Milliseconds", value: Math.round(Math.min(...margins)) });
    }
    emit(metrics, { properties: { event: "heartbeat", held: [...held] } });
    for (const c of checks) emit([{ name: "CheckPassing", unit: "Count", value: c.passing ? 1 : 0 }], { check: c.name, properties: { event: "check" } });
  };

  return { listener, heartbeat };
}

/**
 * Starts the EMF metrics when `observe.cloudwatch.emf` is on (else does nothing): subscribes to
 * the election and writes the heartbeat once in every wall-clock minute, 5 s past it, so the
 * per-minute Sum of AgentUp counts the agents up. Returns what stops it.
 */
export function startEmfMetrics(p: {
  config: { cluster: string; routes: readonly { name: string }[]; observe: { cloudwatch: EmfSettings } };
  identity: { instanceId: string; az: string };
  election: EmfElection;
  health?: EmfHealth;
  clock: { now(): number; wallNow(): number };
  log?: { warn(obj: object, msg: string): void };
  write?: (line: string) => void;
}): { stop(): void; emitter?: EmfEmitter } {
  const settings = p.config.observe.cloudwatch;
  if (!settings.emf) return { stop: () => undefined };
  let warned = false;
  const emitter = createEmfEmitter({
    settings,
    cluster: p.config.cluster,
    instanceId: p.identity.instanceId,
    az: p.identity.az,
    routes: p.config.routes.map((r) => r.name),
    clock: p.clock,
    election: p.election,
    ...(p.health ? { health: p.health } : {}),
    ...(p.write ? { write: p.write } : {}),
    onError: (err) => {
      if (!warned) p.log?.warn({ err: err.message, output: settings.output }, "cannot write CloudWatch EMF metrics");
      warned = true;
    },
  });
  p.election.on(emitter.listener);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = () => {
    if (stopped) return;
    const wall = p.clock.wallNow();
    const next = Math.floor(wall / 60_000) * 60_000 + 65_000;
    timer = setTimeout(() => {
      emitter.heartbeat();
      schedule();
    }, next - wall);
    timer.unref();
  };
  schedule();
  return {
    emitter,
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
