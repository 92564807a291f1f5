import { parseArgs } from "node:util";
import { startSimCluster, type SimCluster, type SimNode } from "../test/support/cluster.js";
import { runNodeCli } from "../test/support/sim-cli.js";
import { LiveView, type ViewRoute } from "./demo/view.js";
import { ALIVE_CHECK, eventTime, marks, nextAcquire, waitForSession, waitForTarget } from "./lib/sim-trials.js";

/**
 * `npm run demo [-- --stay] [--pace MS]`: a local routeleader cluster on the emulators (moto,
 * 3 Consul servers, 3 nodes in two AZs, each with its own Consul client agent, metadata mock
 * and agent process), a live view of who holds which route, then a scripted story: a health
 * check fails on a holder (failover, measured), the node recovers, an operator hands the
 * route back. `--once` (default) exits after the story; `--stay` keeps running until Ctrl-C.
 */

const { values } = parseArgs({
  options: {
    once: { type: "boolean", default: false },
    stay: { type: "boolean", default: false },
    pace: { type: "string", default: "2500" },
  },
});
const stay = values.stay && !values.once;
const paceMs = Number(values.pace);

const ROUTES: ViewRoute[] = [
  { name: "r1", table: "private-a", destination: "0.0.0.0/0" },
  { name: "r2", table: "private-b", destination: "0.0.0.0/0" },
];
const PREFERRED_AZ: Record<string, string> = { r1: "us-east-1a", r2: "us-east-1b" };
const TIMEOUT_MS = 60_000;

// The test fixtures SIGKILL every child on SIGINT; the demo stops them gracefully instead.
// (tsx's own signal relay is hidden from process.listeners() and stays in place.)
for (const signal of ["SIGINT", "SIGTERM"] as const) for (const l of process.listeners(signal)) process.off(signal, l);

let sim: SimCluster | undefined;
let view: LiveView | undefined;
let stopping: Promise<never> | undefined;

function shutdown(code: number, why?: string): Promise<never> {
  stopping ??= (async () => {
    view?.stop();
    if (why) process.stdout.write(`${why}\n`);
    process.stdout.write("stopping the agents, Consul, the metadata mocks and moto...\n");
    await sim?.stop();
    process.stdout.write("stopped everything the demo started\n");
    process.exit(code);
  })();
  return stopping;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    // A second Ctrl-C does not wait: exiting runs the fixtures' exit hook, which SIGKILLs what is left.
    if (stopping) process.exit(130);
    void shutdown(0, `\n${signal}: stopping (press Ctrl-C again to kill everything at once)`);
  });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every route held in its preferred AZ (a route taken elsewhere at start fails back) and the tables following. */
async function steady(s: SimCluster): Promise<void> {
  await s.waitForHolders(
    ROUTES.map((r) => r.name),
    (r, i) => s.nodeByInstance(i)?.spec.az === PREFERRED_AZ[r],
    TIMEOUT_MS,
  );
  for (const r of ROUTES) {
    const holder = (await s.holders()).get(r.name)?.instanceId;
    await waitForTarget(s, r.table, r.destination, (t) => !!t && t === holder, TIMEOUT_MS, 100);
  }
}

async function holderOf(s: SimCluster, route: string): Promise<SimNode> {
  return s.nodeByInstance((await s.holders()).get(route)?.instanceId) as SimNode;
}

async function story(s: SimCluster, v: LiveView): Promise<void> {
  await Promise.all(s.nodes.map((n) => waitForSession(n, 0, TIMEOUT_MS)));
  await steady(s);
  await v.refresh();
  const [r1, r2] = [await holderOf(s, "r1"), await holderOf(s, "r2")];
  v.say(`steady: r1 (private-a, prefers us-east-1a) held by ${r1.name}; r2 (private-b, prefers us-east-1b) held by ${r2.name}; both tables point at their holders`);
  await pause(paceMs);

  const victim = r1;
  v.say(`fault: ${victim.name}'s health check 'alive' starts failing (checked every 200 ms, fall 2)`);
  const since = marks(s);
  const faultAt = Date.now();
  const acquired = nextAcquire(s, "r1", since, TIMEOUT_MS, victim);
  const converged = waitForTarget(s, "private-a", "0.0.0.0/0", (t) => !!t && t !== victim.instanceId, TIMEOUT_MS);
  victim.setHealthy(false);
  const [{ node: heir, event }, convergedAt] = await Promise.all([acquired, converged]);
  await v.refresh();
  v.say(`failover: r1 ${victim.name} → ${heir.name} in ${eventTime(event) - faultAt} ms (fault → new holder's acquire); route table pointed at ${heir.name} ${convergedAt - faultAt} ms after the fault`);
  await pause(paceMs);

  v.say(`recovery: ${victim.name}'s check passes again`);
  const mark = victim.events.length;
  victim.setHealthy(true);
  await waitForSession(victim, mark, TIMEOUT_MS);
  v.say(`${victim.name} is healthy and stands by; r1 stays on ${heir.name} (a healthy holder is not disturbed)`);
  await pause(paceMs);

  v.say(`graceful handover: routeleader handover r1 --to ${victim.instanceId} (run on ${heir.name})`);
  const cli = await runNodeCli(heir, ["handover", "r1", "--to", victim.instanceId]);
  if (cli.code !== 0) throw new Error(`handover exited ${cli.code}: ${cli.stderr.trim()}`);
  await waitForTarget(s, "private-a", "0.0.0.0/0", (t) => t === victim.instanceId, TIMEOUT_MS);
  await v.refresh();
  v.say(`handover: ${cli.stdout.trim()} (${heir.name} → ${victim.name}); route table follows`);
  await steady(s);
  v.say("done: every route has one holder in its preferred AZ and the tables point at the holders");
}

async function main(): Promise<void> {
  const tty = !!process.stdout.isTTY;
  process.stdout.write("starting moto, 3 Consul servers and 3 nodes (a1, a2 in us-east-1a; b1 in us-east-1b), each with a Consul client agent, a metadata mock and the agent...\n");
  const started = Date.now();
  sim = await startSimCluster({
    cluster: "demo",
    nodes: [
      { name: "a1", az: "us-east-1a" },
      { name: "a2", az: "us-east-1a" },
      { name: "b1", az: "us-east-1b" },
    ],
    tables: [
      { name: "private-a", az: "us-east-1a" },
      { name: "private-b", az: "us-east-1b" },
    ],
    routes: ROUTES.map((r) => ({ name: r.name, table: { tags: { Name: r.table } }, destination: r.destination, checks: ["alive"] })),
    checks: ALIVE_CHECK,
    // A route some node outside its AZ took while the preferred nodes were still starting comes back within seconds.
    extra: { policy: { failbackAfter: "3s", holdDown: "10s" } },
  });
  if (stopping) return;
  const ui = `${sim.consul.servers[0]!.httpAddr}/ui/`;
  const header = `routeleader demo — cluster 'demo' — Consul UI: ${ui} — ${stay ? "Ctrl-C stops everything" : "exits after the story (Ctrl-C stops it early)"}`;
  process.stdout.write(`cluster up in ${Math.round((Date.now() - started) / 1000)} s\nConsul UI: ${ui}  (Services → routeleader: who leads what; Key/Value → routeleader/demo/routes/: holder JSON)\n`);
  for (const n of sim.nodes) n.setHealthy(true);
  await Promise.all(sim.nodes.map((n) => sim!.startAgent(n.name)));
  view = new LiveView(sim, ROUTES, header, tty);
  view.start();
  await story(sim, view);
  if (stay) {
    view.say("the cluster keeps running: open the Consul UI, or press Ctrl-C to stop everything");
    await new Promise(() => undefined);
  }
  await pause(300);
  await shutdown(0);
}

main().catch(async (err: Error) => {
  if (stopping) return;
  process.stderr.write(`demo failed: ${err.message}\n`);
  await shutdown(1);
});
