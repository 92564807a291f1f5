/**
 * Load benchmark: 5 agents × 200 routes in 20 route tables, one 3-server Consul cluster with a
 * client agent per node, moto behind the fault proxy (which counts every EC2 call), and a
 * counting relay in front of one node's Consul client agent. Measures: time to converge from
 * a cold start, EC2 calls per minute in steady state, Consul requests per second, agent RSS,
 * and the failover time of one route at that scale.
 *
 *   npm run bench:load [-- --reconcile 10s --steady 60]     (writes docs/benchmarks/load.json)
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parse, stringify } from "yaml";
import { consulVersion } from "../test/support/binaries.js";
import { startSimCluster, type SimCluster, type SimNode } from "../test/support/cluster.js";
import { startHttpRelay, type StartedHttpRelay } from "../test/support/http-relay.js";
import { waitUntil } from "../test/support/process.js";
import { DescribeRouteTablesCommand } from "@aws-sdk/client-ec2";

const AZS = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e"];
const TABLES = 20;
const ROUTES_PER_TABLE = 10;

const { values: args } = parseArgs({
  options: {
    reconcile: { type: "string", default: "10s" },
    steady: { type: "string", default: "60" },
  },
});
const STEADY_SECONDS = Number(args.steady);

function destination(k: number): string {
  return k === 0 ? "0.0.0.0/0" : `172.16.${k}.0/24`;
}

const tableName = (t: number) => `load-${String(t).padStart(2, "0")}`;
const routeName = (t: number, k: number) => `t${String(t).padStart(2, "0")}-d${k}`;

const ROUTES = Array.from({ length: TABLES }, (_, t) =>
  Array.from({ length: ROUTES_PER_TABLE }, (_, k) => ({ name: routeName(t, k), table: { tags: { Name: tableName(t) } }, destination: destination(k), checks: ["alive"] })),
).flat();
const ROUTE_NAMES = ROUTES.map((r) => r.name);

function rssKb(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Every route's target per table, from moto directly (not through the proxy). */
async function actualTargets(sim: SimCluster): Promise<Map<string, string | undefined>> {
  const ids = [...sim.tableIds.values()];
  const res = await sim.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: ids }));
  const out = new Map<string, string | undefined>();
  for (const t of res.RouteTables ?? []) {
    const tIndex = [...sim.tableIds.entries()].find(([, id]) => id === t.RouteTableId)?.[0];
    for (const r of t.Routes ?? []) out.set(`${tIndex} ${r.DestinationCidrBlock}`, r.InstanceId ?? r.GatewayId);
  }
  return out;
}

/** Resolves when every route has a holder in Consul and every table points at it. */
async function converged(sim: SimCluster, timeoutMs: number, test: (route: string, holder: string) => boolean = () => true) {
  return waitUntil(
    "all routes held and written",
    async () => {
      const holders = await sim.holders();
      if (!ROUTE_NAMES.every((r) => holders.get(r)?.instanceId && test(r, holders.get(r)!.instanceId!))) return undefined;
      const targets = await actualTargets(sim);
      for (const r of ROUTES) {
        if (targets.get(`${r.table.tags.Name} ${r.destination}`) !== holders.get(r.name)?.instanceId) return undefined;
      }
      return holders;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/**
 * Like `converged`, but a timeout is a finding, not an abort: it returns the routes whose
 * table entry disagrees with their Consul holder (or that fail `test`), so the run goes on
 * and the report names them.
 */
async function convergedOrStuck(sim: SimCluster, timeoutMs: number, test: (route: string, holder: string) => boolean = () => true) {
  try {
    return { holders: await converged(sim, timeoutMs, test), stuck: [] as { route: string; holder: string | null; target: string | null }[] };
  } catch {
    const holders = await sim.holders();
    const targets = await actualTargets(sim);
    const stuck = ROUTES.filter((r) => {
      const h = holders.get(r.name)?.instanceId;
      return !h || !test(r.name, h) || targets.get(`${r.table.tags.Name} ${r.destination}`) !== h;
    }).map((r) => ({ route: r.name, holder: holders.get(r.name)?.instanceId ?? null, target: targets.get(`${r.table.tags.Name} ${r.destination}`) ?? null }));
    return { holders, stuck };
  }
}


function categorize(path: string): string {
  const p = path.split("?")[0] ?? path;
  if (p.startsWith("/v1/kv/")) return path.includes("index=") ? "kv blocking read" : path.includes("acquire=") ? "kv acquire" : path.includes("release=") ? "kv release" : "kv read/write";
  if (p.startsWith("/v1/agent/check/update/")) return "check update";
  if (p.startsWith("/v1/session/renew/")) return "session renew";
  if (p.startsWith("/v1/session/")) return "session other";
  if (p.startsWith("/v1/health/")) return "health";
  return p.replace(/\/[^/]*$/, "/…");
}

async function main(): Promise<void> {
  const started = Date.now();
  console.log(`load benchmark: 5 agents × ${ROUTES.length} routes in ${TABLES} tables; starting moto, 3 Consul servers, 5 clients…`);
  const sim = await startSimCluster({
    cluster: "load",
    nodes: AZS.map((az, i) => ({ name: `n${i + 1}`, az })),
    tables: Array.from({ length: TABLES }, (_, t) => ({ name: tableName(t), az: AZS[t % AZS.length]! })),
    routes: ROUTES,
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "1s", timeout: "800ms", rise: 1, fall: 2 } },
    extra: { reconcileInterval: args.reconcile, logLevel: "info" },
    faultProxy: true,
  });
  let relay: StartedHttpRelay | undefined;
  try {
    const n1 = sim.node("n1");
    relay = await startHttpRelay({ upstream: n1.consul.httpAddr });
    const cfg = parse(readFileSync(n1.configPath, "utf8")) as { consul: { address: string } };
    cfg.consul.address = relay.endpoint;
    writeFileSync(n1.configPath, stringify(cfg));
    for (const n of sim.nodes) n.setHealthy(true);
    console.log(`  components up in ${((Date.now() - started) / 1000).toFixed(1)} s; starting 5 agents`);

    const cold = Date.now();
    await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name, ["--log-level", "info"])));
    await waitUntil("every route held", async () => {
      const h = await sim.holders();
      return ROUTE_NAMES.every((r) => h.get(r)?.instanceId) ? h : undefined;
    }, { timeoutMs: 600_000, intervalMs: 250 });
    const allHeldMs = Date.now() - cold;
    const first = await convergedOrStuck(sim, 240_000);
    const holders = first.holders;
    const convergeMs = Date.now() - cold;
    if (first.stuck.length) console.log(`  NOT CONVERGED after ${(convergeMs / 1000).toFixed(0)} s: ${JSON.stringify(first.stuck.slice(0, 10))}`);
    const countPerNode = (h: Map<string, { instanceId?: string }>) => Object.fromEntries(sim.nodes.map((n) => [n.name, [...h.values()].filter((x) => x.instanceId === n.instanceId).length]));
    const firstPerNode = countPerNode(holders);
    console.log(`  cold start: every route held after ${(allHeldMs / 1000).toFixed(1)} s, tables converged after ${(convergeMs / 1000).toFixed(1)} s; routes per node ${JSON.stringify(firstPerNode)}`);
    // Nodes outside a route's preferred AZ may win the cold-start race; failback then hands each route to its AZ's node.
    const azNode = new Map(sim.nodes.map((n) => [n.spec.az, n.instanceId]));
    const tableAz = (t: number) => AZS[t % AZS.length]!;
    const preferred = new Map(ROUTES.map((r, i) => [r.name, azNode.get(tableAz(Math.floor(i / ROUTES_PER_TABLE)))]));
    const second = await convergedOrStuck(sim, 240_000, (r, h) => preferred.get(r) === h);
    const balanced = second.holders;
    const balancedMs = Date.now() - cold;
    if (second.stuck.length) console.log(`  NOT BALANCED after ${(balancedMs / 1000).toFixed(0)} s: ${second.stuck.length} routes off their preferred AZ or unwritten, e.g. ${JSON.stringify(second.stuck.slice(0, 5))}`);
    const perNode = countPerNode(balanced);
    console.log(`  failback to the preferred AZs done after ${(balancedMs / 1000).toFixed(1)} s; routes per node ${JSON.stringify(perNode)}`);

    // Let the new holders' re-assert window and the first reconcile pass before measuring.
    const settleUntil = Date.now() + 15_000;
    await waitUntil("settle", async () => (Date.now() >= settleUntil ? true : undefined), { timeoutMs: 20_000, intervalMs: 500 });
    const windowStart = Date.now();
    const windowEnd = windowStart + STEADY_SECONDS * 1000;
    const rssSamples = new Map<string, number[]>();
    await waitUntil(
      "steady-state window",
      async () => {
        for (const n of sim.nodes) {
          const kb = rssKb(n.process?.pid);
          if (kb) rssSamples.set(n.name, [...(rssSamples.get(n.name) ?? []), kb]);
        }
        return Date.now() >= windowEnd ? true : undefined;
      },
      { timeoutMs: STEADY_SECONDS * 1000 + 10_000, intervalMs: 1000 },
    );
    const windowMs = Date.now() - windowStart;
    const perMinute = 60_000 / windowMs;
    const ec2Calls = sim.proxy!.calls().filter((c) => c.time >= windowStart && c.time < windowStart + windowMs);
    const ec2ByAction: Record<string, number> = {};
    for (const c of ec2Calls) ec2ByAction[c.action] = (ec2ByAction[c.action] ?? 0) + 1;
    const holdingNodes = sim.nodes.filter((n) => perNode[n.name]! > 0);
    const describesPerNodePerMinute = Object.fromEntries(
      sim.nodes.map((n) => [n.name, Math.round(ec2Calls.filter((c) => c.caller === n.name && c.action === "DescribeRouteTables").length * perMinute * 10) / 10]),
    );
    const consulReqs = relay.requests(windowStart).filter((r) => r.time < windowStart + windowMs);
    const consulByKind: Record<string, number> = {};
    for (const r of consulReqs) {
      const k = `${r.method} ${categorize(r.path)}`;
      consulByKind[k] = (consulByKind[k] ?? 0) + 1;
    }
    const perSecond = 1000 / windowMs;
    const rss = Object.fromEntries([...rssSamples].map(([name, s]) => [name, { maxMiB: Math.round(Math.max(...s) / 102.4) / 10, lastMiB: Math.round(s[s.length - 1]! / 102.4) / 10 }]));
    console.log(`  steady state over ${(windowMs / 1000).toFixed(0)} s (reconcileInterval ${args.reconcile}): ${ec2Calls.length} EC2 calls = ${(ec2Calls.length * perMinute).toFixed(1)}/min; by action ${JSON.stringify(ec2ByAction)}; writes ${ec2Calls.filter((c) => c.mutating).length}`);
    console.log(`  DescribeRouteTables per node per minute: ${JSON.stringify(describesPerNodePerMinute)} (${holdingNodes.length} holding agents)`);
    console.log(`  Consul requests at n1's client agent: ${(consulReqs.length * perSecond).toFixed(2)}/s; ${JSON.stringify(Object.fromEntries(Object.entries(consulByKind).map(([k, v]) => [k, Math.round(v * perSecond * 100) / 100])))}`);
    console.log(`  agent RSS (MiB): ${JSON.stringify(rss)}`);

    // Failover of one route: fail the check of its holder.
    const now = await sim.holders();
    const unstuck = new Set([...first.stuck, ...second.stuck].map((x) => x.route));
    const probe = ROUTES.find((r) => !unstuck.has(r.name))!;
    const route = probe.name;
    const holderNode = sim.nodeByInstance(now.get(route)?.instanceId) as SimNode;
    const held = [...now.entries()].filter(([, h]) => h.instanceId === holderNode.instanceId).map(([r]) => r);
    const failStart = Date.now();
    holderNode.setHealthy(false);
    const moved = await waitUntil(
      `${route} written by a new holder`,
      async () => {
        const h = (await sim.holders()).get(route)?.instanceId;
        if (!h || h === holderNode.instanceId) return undefined;
        return (await sim.routeTarget(probe.table.tags.Name, probe.destination)) === h ? h : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 25 },
    );
    const failoverMs = Date.now() - failStart;
    const after = await convergedOrStuck(sim, 240_000, (r, h) => unstuck.has(r) || !held.includes(r) || h !== holderNode.instanceId);
    const allMovedMs = Date.now() - failStart;
    const failedAt = failStart;
    const lossEvent = holderNode.events.find((e) => e.route === route && (e.event === "released" || e.event === "lost") && Date.parse(e.time) >= failedAt - 1000);
    console.log(`  failover: ${route} moved from ${holderNode.name} to ${sim.nodeByInstance(moved)?.name} in ${failoverMs} ms (check fall 2 × 1s included); all ${held.length} of its routes in ${allMovedMs} ms`);

    const result = {
      benchmark: "load",
      date: new Date().toISOString(),
      machine: "2 vCPU shared; every component on loopback",
      setup: {
        agents: 5,
        routes: ROUTES.length,
        tables: TABLES,
        consul: `3 servers + 1 client agent per node (v${consulVersion()})`,
        ec2: "moto 5.2.5 behind the fault proxy",
        reconcileInterval: args.reconcile,
        check: "command `test -e healthy`, every 1s, rise 1, fall 2",
        placement: "one node per AZ (5 AZs), 4 tables per AZ; preferredAz auto",
      },
      coldStart: {
        allRoutesHeldMs: allHeldMs,
        tablesConvergedMs: first.stuck.length ? null : convergeMs,
        notConverged: first.stuck,
        routesPerNodeAtFirstConvergence: firstPerNode,
        failbackToPreferredAzDoneMs: second.stuck.length ? null : balancedMs,
        notBalanced: second.stuck.length,
        routesPerNode: perNode,
      },
      steadyState: {
        windowSeconds: Math.round(windowMs / 1000),
        ec2CallsPerMinute: Math.round(ec2Calls.length * perMinute * 10) / 10,
        ec2CallsByAction: ec2ByAction,
        ec2WritesInWindow: ec2Calls.filter((c) => c.mutating).length,
        describeRouteTablesPerNodePerMinute: describesPerNodePerMinute,
        expectedDescribesPerHoldingNodePerMinute: Math.round((60_000 / parseIntervalMs(args.reconcile)) * 10) / 10,
        consulRequestsPerSecondAtOneClientAgent: Math.round(consulReqs.length * perSecond * 100) / 100,
        consulRequestsPerSecondByKind: Object.fromEntries(Object.entries(consulByKind).map(([k, v]) => [k, Math.round(v * perSecond * 100) / 100])),
      },
      rss,
      failover: {
        route,
        from: holderNode.name,
        to: sim.nodeByInstance(moved)?.name,
        trigger: "holder's check fails (fall 2 × every 1s)",
        ms: failoverMs,
        releasedAfterMs: lossEvent ? Date.parse(lossEvent.time) - failStart : null,
        allRoutesOfHolder: held.length,
        allRoutesOfHolderMovedMs: after.stuck.length ? null : allMovedMs,
        notMoved: after.stuck,
      },
    };
    const out = join(dirname(fileURLToPath(import.meta.url)), "..", "docs", "benchmarks", "load.json");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`  written to ${out}`);
  } finally {
    await relay?.stop();
    await sim.stop();
  }
}

function parseIntervalMs(text: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(text);
  if (!m) throw new Error(`--reconcile ${text}: use 500ms, 10s or 2m`);
  return Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "s" ? 1000 : 60_000);
}

await main();
