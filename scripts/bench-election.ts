import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { consulHttp } from "../test/support/consul.js";
import { startSimCluster, type SimCluster, type SimNode } from "../test/support/cluster.js";
import { runNodeCli } from "../test/support/sim-cli.js";
import { ALIVE_CHECK, eventTime, figures, marks, nextAcquire, waitForSession, waitForTarget, type Figures } from "./lib/sim-trials.js";

/**
 * Election benchmark: time from a fault on the holder of one route to the new holder's
 * `acquired` event (and to the first 20 ms poll of moto where the table points at it), over
 * N trials per scenario, on real Consul (3 servers + a client agent per node), moto and the
 * metadata mock. One cluster per profile; agents are restarted between trials, not the cluster.
 *
 *   npm run bench:election -- [--trials 20] [--scenarios check-failure,sigkill,...]
 *
 * Writes docs/benchmarks/election.json (scenarios not run keep their previous figures).
 */

const ROUTE = "r1";
const TABLE = "private-a";
const DEST = "0.0.0.0/0";
const FAILBACK_AFTER_MS = 2000;
const TRIAL_TIMEOUT_MS = 60_000;

type Scenario = "check-failure" | "graceful-stop" | "sigkill" | "handover" | "failback" | "check-failure-fast" | "sigkill-fast";
const SCENARIOS: Scenario[] = ["check-failure", "graceful-stop", "sigkill", "handover", "check-failure-fast", "sigkill-fast", "failback"];

const { values } = parseArgs({
  options: {
    trials: { type: "string", default: "20" },
    scenarios: { type: "string", default: SCENARIOS.join(",") },
    out: { type: "string", default: join(import.meta.dirname, "..", "docs", "benchmarks", "election.json") },
  },
});
const trials = Number(values.trials);
const wanted = values.scenarios.split(",") as Scenario[];
for (const s of wanted) if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s} (known: ${SCENARIOS.join(", ")})`);
if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials must be a positive integer, not ${values.trials}`);

interface Sample {
  /** Fault → the new holder's `acquired` event. */
  acquireMs: number;
  /** Fault → first poll of moto showing the new target. */
  convergedMs: number;
  /** The old holder's `released` → the new holder's `acquired`, when the old holder released. */
  handoffMs?: number;
  /** Handover only: other nodes that held the key on the way to the requested one. */
  detours?: number;
}

const log = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

async function electionCluster(profile: "default" | "fast"): Promise<SimCluster> {
  return startSimCluster({
    cluster: `bench-${profile}`,
    nodes: [
      { name: "n1", az: "us-east-1a" },
      { name: "n2", az: "us-east-1a" },
      { name: "n3", az: "us-east-1b" },
    ],
    tables: [{ name: TABLE, az: "us-east-1a" }],
    // No AZ preference: every node may take the route at once, so the figures are the election's.
    routes: [{ name: ROUTE, table: { tags: { Name: TABLE } }, destination: DEST, checks: ["alive"], preferredAz: "none" }],
    checks: ALIVE_CHECK,
    extra: { election: { profile } },
  });
}

async function failbackCluster(): Promise<SimCluster> {
  return startSimCluster({
    cluster: "bench-failback",
    nodes: [
      { name: "a1", az: "us-east-1a" },
      { name: "b1", az: "us-east-1b" },
    ],
    tables: [{ name: TABLE, az: "us-east-1a" }],
    routes: [{ name: ROUTE, table: { tags: { Name: TABLE } }, destination: DEST, checks: ["alive"] }],
    checks: ALIVE_CHECK,
    extra: { policy: { standbyDelay: "1s", failbackAfter: `${FAILBACK_AFTER_MS}ms`, holdDown: "1s" } },
  });
}

async function startAll(sim: SimCluster): Promise<void> {
  for (const n of sim.nodes) n.setHealthy(true);
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
  await Promise.all(sim.nodes.map((n) => waitForSession(n, 0, TRIAL_TIMEOUT_MS)));
}

/** Waits for a holder whose route the table already follows; returns it. */
async function steadyHolder(sim: SimCluster, test: (n: SimNode) => boolean = () => true): Promise<SimNode> {
  const holders = await sim.waitForHolders([ROUTE], (_r, i) => !!i && test(sim.nodeByInstance(i) as SimNode), TRIAL_TIMEOUT_MS);
  const holder = sim.nodeByInstance(holders.get(ROUTE)?.instanceId) as SimNode;
  await waitForTarget(sim, TABLE, DEST, (t) => t === holder.instanceId, TRIAL_TIMEOUT_MS, 50);
  return holder;
}

/**
 * One trial: inject the fault on the current holder, wait for another node's acquire and for
 * moto to follow. `inject` may return the fault time when it is known better than "now".
 */
async function trial(sim: SimCluster, holder: SimNode, inject: () => Promise<number | void>): Promise<Sample> {
  const since = marks(sim);
  const startedAt = Date.now();
  const acquired = nextAcquire(sim, ROUTE, since, TRIAL_TIMEOUT_MS, holder);
  const converged = waitForTarget(sim, TABLE, DEST, (t) => !!t && t !== holder.instanceId, TRIAL_TIMEOUT_MS);
  let faultAt: number;
  try {
    faultAt = (await inject()) ?? startedAt;
  } catch (err) {
    // The waits still run; their timeouts must not surface as unhandled rejections.
    acquired.catch(() => undefined);
    converged.catch(() => undefined);
    throw err;
  }
  const [{ node, event }, convergedAt] = await Promise.all([acquired, converged]);
  const target = await sim.routeTarget(TABLE, DEST);
  if (target !== node.instanceId) throw new Error(`table points at ${target}, new holder is ${node.instanceId}`);
  const released = holder.events.slice(since.get(holder.name)).find((e) => e.event === "released" && e.route === ROUTE);
  return { acquireMs: eventTime(event) - faultAt, convergedMs: convergedAt - faultAt, ...(released ? { handoffMs: eventTime(event) - eventTime(released) } : {}) };
}

async function restart(sim: SimCluster, node: SimNode): Promise<void> {
  await node.process?.waitForExit(30_000);
  const mark = node.events.length;
  await sim.startAgent(node.name);
  await waitForSession(node, mark, TRIAL_TIMEOUT_MS);
}

/** After a failed trial: every node healthy and running, no operator request left behind. */
async function recover(sim: SimCluster): Promise<void> {
  for (const n of sim.nodes) n.setHealthy(true);
  await consulHttp("DELETE", `${sim.consul.servers[0]!.httpAddr}/v1/kv/routeleader/${sim.cluster}/routes/${ROUTE}/handover`);
  for (const n of sim.nodes) if (!n.process || n.process.hasExited) await restart(sim, n);
}

type Runner = (sim: SimCluster) => Promise<Sample>;

const checkFailure: Runner = async (sim) => {
  const holder = await steadyHolder(sim);
  const mark = holder.events.length;
  const sample = await trial(sim, holder, async () => holder.setHealthy(false));
  holder.setHealthy(true);
  await waitForSession(holder, mark, TRIAL_TIMEOUT_MS);
  return sample;
};

const gracefulStop: Runner = async (sim) => {
  const holder = await steadyHolder(sim);
  const sample = await trial(sim, holder, async () => holder.process!.signal("SIGTERM"));
  await restart(sim, holder);
  return sample;
};

const sigkill: Runner = async (sim) => {
  const holder = await steadyHolder(sim);
  const sample = await trial(sim, holder, async () => holder.process!.signal("SIGKILL"));
  await restart(sim, holder);
  return sample;
};

/**
 * Handover: measured to the acquire of the instance named in `--to` (another node may take
 * the key for a moment on the way: counted as a detour, see the report).
 */
const handover: Runner = async (sim) => {
  const holder = await steadyHolder(sim);
  const to = sim.nodes.find((n) => n !== holder) as SimNode;
  const key = `${sim.consul.servers[0]!.httpAddr}/v1/kv/routeleader/${sim.cluster}/routes/${ROUTE}/handover`;
  const since = marks(sim);
  const acquired = to.waitForEvent((e) => e.event === "acquired" && e.route === ROUTE, TRIAL_TIMEOUT_MS, since.get(to.name));
  const converged = waitForTarget(sim, TABLE, DEST, (t) => t === to.instanceId, TRIAL_TIMEOUT_MS);
  try {
    const cli = await runNodeCli(holder, ["handover", ROUTE, "--to", to.instanceId]);
    if (cli.code !== 0) throw new Error(`handover CLI exited ${cli.code}: ${cli.stderr}`);
    // The fault is the request, written by the CLI once it has started: take its own timestamp.
    const request = JSON.parse((await consulHttp("GET", `${key}?raw`)).text) as { requestedAt: string };
    const faultAt = Date.parse(request.requestedAt);
    const [event, convergedAt] = await Promise.all([acquired, converged]);
    const released = holder.events.slice(since.get(holder.name)).find((e) => e.event === "released" && e.route === ROUTE);
    const detours = sim.nodes.filter((n) => n !== to && n !== holder && n.events.slice(since.get(n.name)).some((e) => e.event === "acquired" && e.route === ROUTE)).length;
    return { acquireMs: eventTime(event) - faultAt, convergedMs: convergedAt - faultAt, ...(released ? { handoffMs: eventTime(event) - eventTime(released) } : {}), detours };
  } catch (err) {
    acquired.catch(() => undefined);
    converged.catch(() => undefined);
    throw err;
  } finally {
    // The request binds the cluster for 30 s; the next trial must not inherit it.
    await consulHttp("DELETE", key);
  }
};

/** Failback: measured from the moment the recovered preferred node has been healthy for failbackAfter. */
const failback: Runner = async (sim) => {
  const [a1, b1] = [sim.node("a1"), sim.node("b1")];
  await steadyHolder(sim, (n) => n === a1);
  a1.setHealthy(false);
  await steadyHolder(sim, (n) => n === b1);
  const since = marks(sim);
  const recoveredAt = Date.now();
  const acquired = a1.waitForEvent((e) => e.event === "acquired" && e.route === ROUTE, TRIAL_TIMEOUT_MS, since.get("a1"));
  const converged = waitForTarget(sim, TABLE, DEST, (t) => t === a1.instanceId, TRIAL_TIMEOUT_MS);
  a1.setHealthy(true);
  const [event, convergedAt] = await Promise.all([acquired, converged]);
  const release = b1.events.slice(since.get("b1")).find((e) => e.event === "released" && e.route === ROUTE);
  if (release?.reason !== "failback") throw new Error(`b1 released ${ROUTE} with reason ${String(release?.reason)}, not failback`);
  const due = recoveredAt + FAILBACK_AFTER_MS;
  return { acquireMs: eventTime(event) - due, convergedMs: convergedAt - due, handoffMs: eventTime(event) - eventTime(release) };
};

const RUNNERS: Record<Scenario, { cluster: "default" | "fast" | "failback"; run: Runner }> = {
  "check-failure": { cluster: "default", run: checkFailure },
  "graceful-stop": { cluster: "default", run: gracefulStop },
  sigkill: { cluster: "default", run: sigkill },
  handover: { cluster: "default", run: handover },
  "check-failure-fast": { cluster: "fast", run: checkFailure },
  "sigkill-fast": { cluster: "fast", run: sigkill },
  failback: { cluster: "failback", run: failback },
};

type Result = Figures & Record<string, number>;

function summarize(samples: Sample[]): Result {
  const acquire = figures(samples.map((s) => s.acquireMs));
  const converged = figures(samples.map((s) => s.convergedMs));
  const handoffs = samples.flatMap((s) => (s.handoffMs === undefined ? [] : [s.handoffMs]));
  const handoff = handoffs.length === samples.length ? figures(handoffs) : undefined;
  return {
    ...acquire,
    route_converged_p50_ms: converged.p50_ms,
    route_converged_p95_ms: converged.p95_ms,
    route_converged_max_ms: converged.max_ms,
    ...(handoff ? { release_to_acquire_p50_ms: handoff.p50_ms, release_to_acquire_p95_ms: handoff.p95_ms } : {}),
    ...(samples.some((s) => s.detours !== undefined) ? { trials_via_another_node: samples.filter((s) => (s.detours ?? 0) > 0).length } : {}),
  };
}

const results: Record<string, Result> = {};
const started = Date.now();
for (const kind of ["default", "fast", "failback"] as const) {
  const scenarios = wanted.filter((s) => RUNNERS[s].cluster === kind);
  if (scenarios.length === 0) continue;
  log(`starting the ${kind} cluster`);
  const sim = kind === "failback" ? await failbackCluster() : await electionCluster(kind);
  try {
    await startAll(sim);
    for (const scenario of scenarios) {
      const samples: Sample[] = [];
      let failed = 0;
      while (samples.length < trials) {
        const attempt = samples.length + failed + 1;
        try {
          const s = await RUNNERS[scenario].run(sim);
          samples.push(s);
          log(`${scenario} ${samples.length}/${trials}: acquire ${s.acquireMs} ms, table ${s.convergedMs} ms${s.handoffMs === undefined ? "" : `, release→acquire ${s.handoffMs} ms`}${s.detours ? `, via ${s.detours} other node(s)` : ""}`);
        } catch (err) {
          failed++;
          log(`${scenario} attempt ${attempt} FAILED: ${(err as Error).message}`);
          for (const n of sim.nodes) {
            const recent = n.events.filter((e) => e.msg !== "health check ran").slice(-25);
            log(`${n.name} (${n.instanceId}) last events:\n${recent.map((e) => `  ${e.time} ${e.msg}${e.reason ? ` (${String(e.reason)})` : ""}`).join("\n")}`);
          }
          if (failed > trials / 4) throw new Error(`${scenario}: ${failed} failed trials; giving up`, { cause: err });
          await recover(sim);
        }
      }
      results[scenario] = { ...summarize(samples), ...(failed ? { failed_trials: failed } : {}) };
    }
  } finally {
    await sim.stop();
  }
}

const previous: Record<string, Result> = existsSync(values.out) ? (JSON.parse(readFileSync(values.out, "utf8")) as Record<string, Result>) : {};
const merged = Object.fromEntries(SCENARIOS.filter((s) => results[s] ?? previous[s]).map((s) => [s, results[s] ?? previous[s]]));
mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(values.out, `${JSON.stringify(merged, null, 2)}\n`);

const rows = Object.entries(results).map(([s, r]) => [r.failed_trials ? `${s} (${r.failed_trials} failed, retried)` : s, String(r.trials), String(r.p50_ms), String(r.p95_ms), String(r.max_ms), `${r.route_converged_p50_ms} / ${r.route_converged_p95_ms}`]);
const header = ["scenario", "n", "p50 ms", "p95 ms", "max ms", "table p50 / p95 ms"];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
process.stdout.write(`${[fmt(header), ...rows.map(fmt)].join("\n")}\n`);
process.stdout.write(
  `\nTime = fault → the new holder's 'acquired' event (table: → first 20 ms poll of moto showing it).\n` +
    `failback: from recovery + failbackAfter (${FAILBACK_AFTER_MS} ms) to the preferred node's acquire; includes the check's rise and the 1 s peer-health poll.\n` +
    `Written to ${values.out} in ${Math.round((Date.now() - started) / 1000)} s.\n`,
);
process.exit(0);
