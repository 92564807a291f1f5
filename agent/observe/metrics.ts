import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ElectionListener } from "../election/events.js";

/** How one AWS or Consul call ended: aborted means cancelled by the agent itself (shutdown, leadership lost). */
export type CallOutcome = "ok" | "error" | "timeout" | "throttled" | "aborted";

/** What the code paths that make calls and run checks record; a Metrics is one. */
export interface CallRecorder {
  recordAwsCall(action: string, outcome: CallOutcome, ms: number): void;
  recordConsulRequest(op: string, outcome: CallOutcome): void;
  recordCheck(name: string, passing: boolean, latencyMs: number): void;
  recordError(component: string): void;
}

export interface MetricsOptions {
  /** Route names known at start: their leader gauge reads 0 before any event. */
  routes?: readonly string[];
  /**
   * Receive what `processMetrics` records: the calls of the AWS clients, the Consul client and
   * the health monitors of this process (default true). The agent's own Metrics must; a second
   * instance in the same process (a test) would see the same calls.
   */
  attach?: boolean;
}

/** The agent's Prometheus metrics, in a registry of their own (never prom-client's global one). */
export interface Metrics extends CallRecorder {
  readonly registry: Registry;
  /** Updates leadership, transitions, failover time and route writes from election events. */
  readonly listener: ElectionListener;
  /** The exposition text and its content type, for /metrics. */
  render(): Promise<{ contentType: string; body: string }>;
}

const FAILOVER_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60];
const CALL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5];

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const routeLeader = new Gauge({ name: "routeleader_route_leader", help: "1 while this node holds the route's lock, else 0.", labelNames: ["route"], registers });
  const transitions = new Counter({
    name: "routeleader_transitions_total",
    help: "Leadership transitions of this node, by route, type (acquired, released, lost) and reason.",
    labelNames: ["route", "type", "reason"],
    registers,
  });
  const failover = new Histogram({
    name: "routeleader_failover_seconds",
    help: "Time a route was without a holder (lost or released elsewhere) before this node acquired it.",
    buckets: FAILOVER_BUCKETS,
    registers,
  });
  const routeWrites = new Counter({ name: "routeleader_route_writes_total", help: "Route table writes made by this node, by route and action.", labelNames: ["route", "action"], registers });
  const writesRefused = new Counter({
    name: "routeleader_route_writes_refused_total",
    help: "Route writes the fencing gate refused (lock not proven), by route and reason.",
    labelNames: ["route", "reason"],
    registers,
  });
  const writesFailed = new Counter({ name: "routeleader_route_write_failures_total", help: "Route writes EC2 did not accept, by route and whether the refusal is final (fatal).", labelNames: ["route", "fatal"], registers });
  const routesGivenUp = new Counter({
    name: "routeleader_routes_given_up_total",
    help: "Times this node released a route because EC2 refused its writes for good, and stayed ineligible for a back-off.",
    labelNames: ["route"],
    registers,
  });
  const checkPassing = new Gauge({ name: "routeleader_check_passing", help: "1 while the named health check counts as passing, else 0.", labelNames: ["check"], registers });
  const checkLatency = new Histogram({ name: "routeleader_check_latency_seconds", help: "Duration of each health check run.", labelNames: ["check"], buckets: CALL_BUCKETS, registers });
  const awsCalls = new Counter({ name: "routeleader_aws_calls_total", help: "EC2 and Auto Scaling API calls, by action and outcome.", labelNames: ["action", "outcome"], registers });
  const awsSeconds = new Histogram({ name: "routeleader_aws_call_seconds", help: "Duration of EC2 and Auto Scaling API calls.", labelNames: ["action"], buckets: CALL_BUCKETS, registers });
  const consulRequests = new Counter({ name: "routeleader_consul_requests_total", help: "Consul HTTP API requests, by operation and outcome.", labelNames: ["op", "outcome"], registers });
  const errors = new Counter({ name: "routeleader_errors_total", help: "Errors the agent handled and carried on from, by component: aws and consul (a failed call), routes (a route write that failed), health (a check that could not run, a release before failing that failed), hooks, discovery, lifecycle, http.", labelNames: ["component"], registers });

  for (const route of options.routes ?? []) routeLeader.set({ route }, 0);

  const listener: ElectionListener = (event) => {
    switch (event.type) {
      case "acquired":
        routeLeader.set({ route: event.route }, 1);
        transitions.inc({ route: event.route, type: "acquired", reason: "acquired" });
        failover.observe(event.waitedMs / 1000);
        break;
      case "released":
      case "lost":
        routeLeader.set({ route: event.route }, 0);
        transitions.inc({ route: event.route, type: event.type, reason: event.reason });
        break;
      case "routeWritten":
        routeWrites.inc({ route: event.route, action: event.action });
        break;
      case "writeRefused":
        writesRefused.inc({ route: event.route, reason: event.reason });
        break;
      case "writeFailed":
        errors.inc({ component: "routes" });
        break;
      case "writeFailed":
        writesFailed.inc({ route: event.route, fatal: String(event.fatal) });
        break;
      case "blocked":
        routesGivenUp.inc({ route: event.route });
        break;
      case "leaderChanged":
        break;
    }
  };

  const metrics: Metrics = {
    registry,
    listener,
    recordAwsCall(action, outcome, ms) {
      awsCalls.inc({ action, outcome });
      awsSeconds.observe({ action }, ms / 1000);
    },
    recordConsulRequest(op, outcome) {
      consulRequests.inc({ op, outcome });
    },
    recordCheck(name, passing, latencyMs) {
      checkPassing.set({ check: name }, passing ? 1 : 0);
      checkLatency.observe({ check: name }, latencyMs / 1000);
    },
    recordError(component) {
      errors.inc({ component });
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
  if (options.attach ?? true) {
    attached.add(new WeakRef(metrics));
    // What the process recorded before its first Metrics existed (the start-up calls: identity,
    // route tables, Consul's agent/self, the registration) counts too.
    for (const record of early.splice(0)) record(metrics);
    everAttached = true;
  }
  return metrics;
}

/** The Metrics of this process that receive `processMetrics` (weakly held: a dropped one goes). */
const attached = new Set<WeakRef<Metrics>>();
/** Records made before any Metrics was attached, replayed into the first one (bounded). */
const early: ((m: Metrics) => void)[] = [];
const EARLY_MAX = 10_000;
let everAttached = false;

function each(record: (m: Metrics) => void): void {
  if (!everAttached) {
    if (early.length < EARLY_MAX) early.push(record);
    return;
  }
  for (const ref of attached) {
    const m = ref.deref();
    if (m) record(m);
    else attached.delete(ref);
  }
}

/**
 * The process-wide recorder the AWS clients, the Consul client and the health monitor use by
 * default: it forwards to every attached Metrics (in the agent: the one /metrics serves), and
 * keeps what is recorded before the first one exists for it, so recording needs no wiring
 * through the agent. A caller may pass its own CallRecorder instead.
 */
export const processMetrics: CallRecorder = {
  recordAwsCall: (action, outcome, ms) => each((m) => m.recordAwsCall(action, outcome, ms)),
  recordConsulRequest: (op, outcome) => each((m) => m.recordConsulRequest(op, outcome)),
  recordCheck: (name, passing, latencyMs) => each((m) => m.recordCheck(name, passing, latencyMs)),
  recordError: (component) => each((m) => m.recordError(component)),
};
