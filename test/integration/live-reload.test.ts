import { CreateRouteTableCommand, CreateTagsCommand, CreateVpcCommand, DeleteTagsCommand, DescribeRouteTablesCommand, ReplaceRouteCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { parse, stringify } from "yaml";
import { runCli } from "../support/agent-cli.js";
import { consulHttp } from "../support/consul.js";
import { waitUntil } from "../support/process.js";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";

/**
 * Issue #21 on real components (moto behind the fault proxy, a 3-server Consul cluster, two
 * agent processes): route-table selectors are re-resolved at every reconcile, and the
 * configuration is reloaded without a restart (SIGHUP or `routeleader reload`).
 */

const RECONCILE_MS = 1500;
const ROUTES = [
  // r1 manages private-a, and any table tagged live=yes later.
  { name: "r1", table: { or: [{ tags: { Name: "private-a" } }, { tags: { live: "yes" } }] }, destination: "0.0.0.0/0", checks: ["alive"] },
  { name: "r2", table: { tags: { Name: "private-b" } }, destination: "10.50.0.0/16", checks: ["alive"] },
];

let sim: SimCluster;
let igw: string;

async function targetIn(tableId: string, destination: string): Promise<string | undefined> {
  const res = await sim.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [tableId] }));
  const route = res.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === destination);
  return route?.InstanceId ?? route?.NetworkInterfaceId ?? route?.GatewayId;
}

/** Mutating EC2 calls on one table (any caller) since `since`. */
function writesTo(tableId: string, since: number, destination?: string) {
  return sim.proxy!.mutatingCalls().filter((c) => c.time >= since && c.params.RouteTableId === tableId && (!destination || c.params.DestinationCidrBlock === destination));
}

async function holderOf(route: string): Promise<SimNode> {
  const holders = await sim.waitForHolders([route], (_r, i) => !!i, 30_000);
  return sim.nodeByInstance(holders.get(route)?.instanceId) as SimNode;
}

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "live",
    nodes: [
      { name: "n1", az: "us-east-1a", http: true },
      { name: "n2", az: "us-east-1b", http: true },
    ],
    tables: [
      { name: "private-a", az: "us-east-1a" },
      { name: "private-b", az: "us-east-1b" },
    ],
    routes: ROUTES,
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 1, fall: 2 } },
    extra: { reconcileInterval: `${RECONCILE_MS}ms`, policy: { standbyDelay: "0s", failbackAfter: "1h" } },
    faultProxy: true,
  });
  const b = await sim.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [sim.tableIds.get("private-b") as string] }));
  igw = b.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === "0.0.0.0/0")?.GatewayId as string;
  for (const n of sim.nodes) n.setHealthy(true);
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
  await sim.waitForHolders(["r1", "r2"], (_r, i) => !!i, 60_000);
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

describe("live: route-table selectors are re-resolved at every reconcile", () => {
  it("live: a table tagged after start is pointed at the holder within one reconcile", async () => {
    const holder = await holderOf("r1");
    const b = sim.tableIds.get("private-b") as string;
    expect(await targetIn(b, "0.0.0.0/0")).toBe(igw);
    const taggedAt = Date.now();
    await sim.ec2.send(new CreateTagsCommand({ Resources: [b], Tags: [{ Key: "live", Value: "yes" }] }));
    await waitUntil("private-b 0.0.0.0/0 points at r1's holder", async () => ((await targetIn(b, "0.0.0.0/0")) === holder.instanceId ? true : undefined), { timeoutMs: RECONCILE_MS + 3000, intervalMs: 100 });
    const ms = Date.now() - taggedAt;
    console.log(`live: tagged table claimed ${ms} ms after the tag (reconcileInterval ${RECONCILE_MS} ms)`);
    const matched = await holder.waitForEvent((e) => e.event === "tableMatched" && e.table === b, 5000);
    expect(matched.route).toBe("r1");
    // Only the holder wrote it.
    expect(writesTo(b, taggedAt, "0.0.0.0/0").map((c) => c.caller)).toEqual([holder.name]);
  });

  it("live: an untagged table is left untouched (logged once, never rewritten or deleted)", async () => {
    const holder = await holderOf("r1");
    const b = sim.tableIds.get("private-b") as string;
    const mark = holder.events.length;
    await sim.ec2.send(new DeleteTagsCommand({ Resources: [b], Tags: [{ Key: "live" }] }));
    await holder.waitForEvent((e) => e.event === "tableUnmatched" && e.table === b, RECONCILE_MS + 5000, mark);
    // Someone points it elsewhere: the former holder no longer repairs it.
    const since = Date.now();
    await sim.ec2.send(new ReplaceRouteCommand({ RouteTableId: b, DestinationCidrBlock: "0.0.0.0/0", GatewayId: igw }));
    await new Promise((r) => setTimeout(r, 3 * RECONCILE_MS));
    expect(await targetIn(b, "0.0.0.0/0")).toBe(igw);
    expect(writesTo(b, since + 1, "0.0.0.0/0")).toEqual([]);
    expect(holder.events.slice(mark).filter((e) => e.event === "tableUnmatched" && e.table === b)).toHaveLength(1);
  });

  it("live: a table of another VPC that matches the selector is never written", async () => {
    const vpc = (await sim.ec2.send(new CreateVpcCommand({ CidrBlock: "10.9.0.0/16" }))).Vpc?.VpcId as string;
    const foreign = (await sim.ec2.send(new CreateRouteTableCommand({ VpcId: vpc }))).RouteTable?.RouteTableId as string;
    const since = Date.now();
    await sim.ec2.send(new CreateTagsCommand({ Resources: [foreign], Tags: [{ Key: "live", Value: "yes" }] }));
    await new Promise((r) => setTimeout(r, 3 * RECONCILE_MS));
    expect(writesTo(foreign, since)).toEqual([]);
    expect(await targetIn(foreign, "0.0.0.0/0")).toBeUndefined();
    for (const n of sim.nodes) expect(n.events.filter((e) => e.table === foreign)).toEqual([]);
  });
});

// ---------------------------------------------------------------- reload

type Doc = Record<string, unknown> & { routes: Record<string, unknown>[]; checks: Record<string, Record<string, unknown>> };

function readDoc(node: SimNode): Doc {
  return parse(readFileSync(node.configPath, "utf8")) as Doc;
}

function writeDoc(node: SimNode, doc: unknown): void {
  writeFileSync(node.configPath, typeof doc === "string" ? doc : stringify(doc));
}

interface Outcome {
  outcome: string;
  changes: { path: string; kind: string; message: string }[];
  problems?: string;
  message: string;
}

/** SIGHUP to the agent; resolves with its reload log line. */
async function reloadBySighup(node: SimNode): Promise<Outcome> {
  const mark = node.events.length;
  node.process!.signal("SIGHUP");
  const line = await node.waitForEvent((e) => e.event === "reloaded" || e.event === "reloadRefused", 30_000, mark);
  return { outcome: line.outcome as string, changes: (line.changes as Outcome["changes"]) ?? [], ...(line.problems ? { problems: line.problems as string } : {}), message: line.msg };
}

/** `routeleader reload --config F --json`: the agent's answer and the CLI's exit code. */
async function reloadByCli(node: SimNode): Promise<Outcome & { code: number | null; output: string }> {
  const mark = node.events.length;
  const { code, output } = await runCli(["reload", "--config", node.configPath, "--json"], { name: `reload ${node.name}` });
  await node.waitForEvent((e) => e.event === "reloaded" || e.event === "reloadRefused", 10_000, mark);
  const json = output.slice(output.indexOf("{"), output.lastIndexOf("}") + 1);
  return { ...(JSON.parse(json) as Outcome), code, output };
}

async function statusOf(node: SimNode): Promise<{ routes: { route: string; phase: string }[]; config: { routes: string[]; lastReload: Outcome | null } }> {
  const res = await fetch(`${node.httpUrl}/status`);
  return (await res.json()) as never;
}

/** The holder entries (session, LockIndex) of these routes, sampled until `stop` resolves. */
function sampleHolders(routes: string[], stop: Promise<unknown>) {
  const samples: Map<string, { session?: string; lockIndex: number }>[] = [];
  let done = false;
  void stop.finally(() => (done = true));
  const run = (async () => {
    while (!done) {
      samples.push(await sim.holders());
      await new Promise((r) => setTimeout(r, 50));
    }
    samples.push(await sim.holders());
  })();
  return { samples, finished: run, routes };
}

describe("live: configuration reload (SIGHUP and routeleader reload)", () => {
  it("live: reload adds a route: it joins the election, is held and written; SIGHUP and routeleader reload answer the same", async () => {
    const b = sim.tableIds.get("private-b") as string;
    for (const n of sim.nodes) {
      const doc = readDoc(n);
      doc.routes.push({ name: "r3", table: { tags: { Name: "private-b" } }, destination: "10.60.0.0/16", checks: ["alive"] });
      writeDoc(n, doc);
    }
    const [bySignal, byCli] = await Promise.all([reloadBySighup(sim.node("n1")), reloadByCli(sim.node("n2"))]);
    expect(byCli.code).toBe(0);
    expect(bySignal.outcome).toBe("applied");
    expect(byCli.outcome).toBe("applied");
    expect(bySignal.changes).toEqual(byCli.changes);
    expect(byCli.changes.map((c) => c.path)).toEqual(["routes[r3]"]);
    const holder = await holderOf("r3");
    await waitUntil("private-b 10.60.0.0/16 points at r3's holder", async () => ((await targetIn(b, "10.60.0.0/16")) === holder.instanceId ? true : undefined), { timeoutMs: 15_000, intervalMs: 100 });
    for (const n of sim.nodes) expect((await statusOf(n)).config.routes).toEqual(["r1", "r2", "r3"]);
  });

  it("live: reload changes a check: re-registered, the holders keep their routes and the keys never go free (no lock-delay)", async () => {
    const before = await sim.holders();
    for (const n of sim.nodes) {
      const doc = readDoc(n);
      // every 200ms → 1s changes the check's Consul TTL too (3 s → 5.7 s).
      doc.checks.alive = { ...doc.checks.alive, every: "1s", timeout: "900ms" };
      writeDoc(n, doc);
    }
    const reloads = Promise.all([reloadBySighup(sim.node("n1")), reloadByCli(sim.node("n2"))]);
    const sampler = sampleHolders(["r1", "r2", "r3"], reloads.then(() => new Promise((r) => setTimeout(r, 8000))));
    const [bySignal, byCli] = await reloads;
    await sampler.finished;
    expect(bySignal.changes).toEqual(byCli.changes);
    expect(byCli.changes.map((c) => c.path)).toEqual(["checks.alive"]);
    expect(sampler.samples.length).toBeGreaterThan(20);
    for (const sample of sampler.samples) {
      for (const r of ["r1", "r2", "r3"]) {
        expect(sample.get(r)?.session, `${r} keeps its session`).toBe(before.get(r)?.session);
        expect(sample.get(r)?.lockIndex, `${r} keeps its LockIndex`).toBe(before.get(r)?.lockIndex);
      }
    }
    for (const n of sim.nodes) {
      expect(n.events.filter((e) => e.event === "released" || e.event === "lost").filter((e) => Date.parse(e.time) > Date.now() - 20_000)).toEqual([]);
      const checks = (await consulHttp("GET", `${n.consul.httpAddr}/v1/agent/checks`)).json as Record<string, { Status: string }>;
      expect(checks[`routeleader-${n.instanceId}:check:alive`]?.Status).toBe("passing");
    }
  });

  it("live: reload removes a route: released first (reason removed), the table untouched, then dropped", async () => {
    const b = sim.tableIds.get("private-b") as string;
    const holder = await holderOf("r2");
    const others = sim.nodes.filter((n) => n !== holder);
    const target = await targetIn(b, "10.50.0.0/16");
    expect(target).toBe(holder.instanceId);
    const since = Date.now();
    const mark = holder.events.length;
    // Followers first: a node still configured with the route would take it over.
    for (const n of [...others, holder]) {
      const doc = readDoc(n);
      doc.routes = doc.routes.filter((r) => r.name !== "r2");
      writeDoc(n, doc);
      const outcome = n === holder ? await reloadBySighup(n) : await reloadByCli(n);
      expect(outcome.outcome).toBe("applied");
      expect(outcome.changes.map((c) => c.path)).toEqual(["routes[r2]"]);
    }
    const released = await holder.waitForEvent((e) => e.event === "released" && e.route === "r2", 15_000, mark);
    expect(released.reason).toBe("removed");
    await holder.waitForEvent((e) => e.event === "routeDropped" && e.route === "r2", 15_000, mark);
    const key = (await sim.holders()).get("r2");
    expect(key?.session).toBeUndefined();
    await new Promise((r) => setTimeout(r, 2 * RECONCILE_MS));
    expect(await targetIn(b, "10.50.0.0/16")).toBe(target);
    expect(writesTo(b, since, "10.50.0.0/16")).toEqual([]);
    for (const n of sim.nodes) expect((await statusOf(n)).routes.map((r) => r.route)).toEqual(["r1", "r3"]);
  });

  it("live: an invalid file is refused with the messages of validate; the agent keeps serving on its configuration", async () => {
    const before = await sim.holders();
    const good = sim.nodes.map((n) => readFileSync(n.configPath, "utf8"));
    try {
      for (const n of sim.nodes) {
        const doc = readDoc(n);
        doc.routes.push({ name: "bad", table: { tags: { Name: "private-a" } }, destination: "10.0.0.1/33", colour: "red" });
        writeDoc(n, doc);
      }
      const validate = await runCli(["validate", "--config", sim.node("n2").configPath]);
      expect(validate.code).toBe(3);
      const problems = validate.output.split("\n").filter((l) => l.includes(sim.node("n2").configPath) && /: routes\[/.test(l));
      expect(problems.length).toBe(2);

      const [bySignal, byCli] = await Promise.all([reloadBySighup(sim.node("n1")), runCli(["reload", "--config", sim.node("n2").configPath], { name: "reload n2" })]);
      expect(bySignal.outcome).toBe("refused");
      expect(byCli.code).toBe(3);
      for (const line of problems) expect(byCli.output).toContain(line.trim());
      for (const line of problems.map((l) => l.trim().replace(sim.node("n2").configPath, sim.node("n1").configPath))) expect(bySignal.problems).toContain(line);

      for (const n of sim.nodes) {
        const status = await statusOf(n);
        expect(status.config.lastReload?.outcome).toBe("refused");
        expect(status.config.routes).toEqual(["r1", "r3"]);
        const metrics = await (await fetch(`${n.httpUrl}/metrics`)).text();
        expect(metrics).toMatch(/routeleader_config_reloads_total\{outcome="refused"\} [1-9]/);
        await waitUntil(
          `${n.name}'s liveness output tells the refusal`,
          async () => {
            const checks = (await consulHttp("GET", `${n.consul.httpAddr}/v1/agent/checks`)).json as Record<string, { Status: string; Output: string }>;
            const liveness = checks[`routeleader-${n.instanceId}:liveness`];
            return liveness?.Status === "passing" && /last reload refused/.test(liveness.Output) ? true : undefined;
          },
          { timeoutMs: 5000, intervalMs: 200 },
        );
      }
      // Still serving: the holders are the same and a hand-made drift is repaired.
      const after = await sim.holders();
      for (const r of ["r1", "r3"]) expect(after.get(r)?.session).toBe(before.get(r)?.session);
      const a = sim.tableIds.get("private-a") as string;
      await sim.ec2.send(new ReplaceRouteCommand({ RouteTableId: a, DestinationCidrBlock: "0.0.0.0/0", GatewayId: igw }));
      await waitUntil("private-a repaired", async () => ((await targetIn(a, "0.0.0.0/0")) === after.get("r1")?.instanceId ? true : undefined), { timeoutMs: RECONCILE_MS + 5000, intervalMs: 100 });

      // A setting that cannot change live is refused, naming it.
      for (const [i, n] of sim.nodes.entries()) writeDoc(n, (good[i] as string).replace(/^cluster: live$/m, "cluster: other"));
      const [clusterBySignal, clusterByCli] = await Promise.all([reloadBySighup(sim.node("n1")), runCli(["reload", "--config", sim.node("n2").configPath], { name: "reload n2" })]);
      expect(clusterBySignal.outcome).toBe("refused");
      expect(clusterBySignal.problems).toMatch(/cluster: cannot change while the agent runs \("live" → "other"\).*restart the agent to apply it/);
      expect(clusterByCli.code).toBe(3);
      expect(clusterByCli.output).toMatch(/cluster: cannot change while the agent runs \("live" → "other"\)/);
    } finally {
      for (const [i, n] of sim.nodes.entries()) writeDoc(n, good[i] as string);
    }
    const restored = await reloadBySighup(sim.node("n1"));
    expect(restored.outcome).toBe("unchanged");
  });
});
