import { ReplaceRouteCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consulHttp } from "../support/consul.js";
import { waitUntil } from "../support/process.js";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";
import { watchInvariants } from "../support/faults/watch.js";

/**
 * Per-route leadership on a real 3-server Consul cluster: three agent processes, each with
 * its own Consul client agent, metadata mock and identity, writing routes in moto through a
 * fault proxy that logs every mutating call with its caller. Every test is also held to the
 * liveness invariants of issue #14 (test/support/faults/watch.ts).
 */

const ROUTES = [
  { name: "r1", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0", checks: ["alive"] },
  { name: "r2", table: { tags: { Name: "private-a" } }, destination: "10.200.0.0/16", checks: ["alive"] },
  { name: "r3", table: { tags: { Name: "private-b" } }, destination: "0.0.0.0/0", checks: ["alive"] },
  { name: "r4", table: { tags: { Name: "private-b" } }, destination: "10.201.0.0/16", checks: ["alive"] },
];
const ROUTE_NAMES = ROUTES.map((r) => r.name);
const TABLE_OF: Record<string, [string, string]> = { r1: ["private-a", "0.0.0.0/0"], r2: ["private-a", "10.200.0.0/16"], r3: ["private-b", "0.0.0.0/0"], r4: ["private-b", "10.201.0.0/16"] };

let sim: SimCluster;


const eventTime = (e: { time: string }) => Date.parse(e.time);

/** Mutating EC2 calls a node made after `since` (ms since epoch), from the proxy's log. */
function writesAfter(node: SimNode, since: number) {
  return sim.proxy!.mutatingCalls(node.name).filter((c) => c.time > since);
}

async function routeTargetsConverge(timeoutMs: number) {
  return waitUntil(
    "route tables point at the Consul holders",
    async () => {
      const holders = await sim.holders();
      for (const r of ROUTE_NAMES) {
        const [table, dest] = TABLE_OF[r]!;
        const holder = holders.get(r)?.instanceId;
        if (!holder || (await sim.routeTarget(table, dest)) !== holder) return undefined;
      }
      return holders;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "election",
    nodes: [
      { name: "n1", az: "us-east-1a", http: true },
      { name: "n2", az: "us-east-1b", http: true },
      { name: "n3", az: "us-east-1c", http: true },
    ],
    tables: [
      { name: "private-a", az: "us-east-1a" },
      { name: "private-b", az: "us-east-1b" },
    ],
    routes: ROUTES,
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 1, fall: 2 } },
    // A short reconcile interval, so a holder that was not fenced would visibly write.
    extra: { reconcileInterval: "2s" },
    faultProxy: true,
  });
  for (const n of sim.nodes) n.setHealthy(true);
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
  await sim.waitForHolders(ROUTE_NAMES, (_r, i) => !!i, 60_000);
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

// Lock-delay 3 s: no former holder writes within it of a takeover.
watchInvariants(() => sim, Object.fromEntries(ROUTE_NAMES.map((r) => [r, { table: TABLE_OF[r]![0], destination: TABLE_OF[r]![1] }])), { failoverBoundMs: 30_000, writeWindowMs: 3000 });

describe("per-route leadership (3 contenders, 4 routes, real 3-server Consul)", () => {
  it("has exactly one holder per route at every observation, and the tables follow it", async () => {
    await routeTargetsConverge(30_000);
    const instances = new Set(sim.nodes.map((n) => n.instanceId));
    for (let i = 0; i < 20; i++) {
      const holders = await sim.holders();
      for (const r of ROUTE_NAMES) {
        const h = holders.get(r);
        expect(h?.session, `route ${r} has a session`).toBeTruthy();
        expect(instances.has(h?.instanceId as string), `route ${r} held by a cluster node`).toBe(true);
      }
      // The agents agree with Consul: exactly one node believes it holds each route.
      for (const r of ROUTE_NAMES) {
        const believers = sim.nodes.filter((n) => {
          const last = [...n.events].reverse().find((e) => e.route === r && ["acquired", "lost", "released"].includes(e.event as string));
          return last?.event === "acquired";
        });
        expect(believers.map((b) => b.instanceId)).toEqual([holders.get(r)?.instanceId]);
      }
    }
  });

  it("a holder whose check fails releases; another node takes the routes; the old holder writes nothing after", async () => {
    const holders = await routeTargetsConverge(30_000);
    const victim = sim.nodeByInstance(holders.get("r1")?.instanceId) as SimNode;
    const victimRoutes = ROUTE_NAMES.filter((r) => holders.get(r)?.instanceId === victim.instanceId);
    const mark = victim.events.length;
    const faultAt = Date.now();
    victim.setHealthy(false);

    const released = await Promise.all(victimRoutes.map((r) => victim.waitForEvent((e) => e.event === "released" && e.route === r, 20_000, mark)));
    await sim.waitForHolders(victimRoutes, (_r, i) => !!i && i !== victim.instanceId, 30_000);
    await routeTargetsConverge(30_000);
    const lastRelease = Math.max(...released.map(eventTime));
    expect(released.every((e) => e.reason === "checkFailed")).toBe(true);
    expect(writesAfter(victim, lastRelease)).toEqual([]);
    console.log(`check failure: ${victimRoutes.length} route(s) released by ${victim.name} ${lastRelease - faultAt} ms after the check file was removed`);

    victim.setHealthy(true);
  });

  it("a holder killed with SIGKILL loses its routes after about liveness TTL + lock-delay", async () => {
    const holders = await routeTargetsConverge(30_000);
    const victim = sim.nodeByInstance(holders.get("r3")?.instanceId) as SimNode;
    const victimRoutes = ROUTE_NAMES.filter((r) => holders.get(r)?.instanceId === victim.instanceId);
    const killedAt = Date.now();
    await victim.process!.kill();
    await sim.waitForHolders(victimRoutes, (_r, i) => !!i && i !== victim.instanceId, 60_000);
    const takenAfter = Date.now() - killedAt;
    console.log(`SIGKILL of ${victim.name}: routes ${victimRoutes.join(", ")} held by a peer ${takenAfter} ms later (liveness TTL 3 s + lock-delay 3 s)`);
    expect(takenAfter).toBeLessThan(45_000);
    await routeTargetsConverge(30_000);
    const mark = victim.events.length;
    await sim.startAgent(victim.name);
    await victim.waitForEvent((e) => e.msg === "agent running", 30_000, mark);
  });

  it("writes nothing while Consul has no servers, and every route has one holder again after they return", async () => {
    const holders = await routeTargetsConverge(30_000);
    const holderOfR1 = sim.nodeByInstance(holders.get("r1")?.instanceId) as SimNode;
    const marks = new Map(sim.nodes.map((n) => [n.name, n.events.length]));
    await Promise.all(sim.consul.servers.map((s) => s.halt()));
    const downAt = Date.now();
    // Every running agent notices (its watch fails) before we tamper with the table.
    await Promise.all(sim.nodes.map((n) => n.waitForEvent((e) => /watch failed/.test(e.msg), 30_000, marks.get(n.name))));
    // Hand-edit r1 away from its holder: with Consul down nobody may repair it (fail static).
    await sim.ec2.send(new ReplaceRouteCommand({ RouteTableId: sim.tableIds.get("private-a"), DestinationCidrBlock: "0.0.0.0/0", InstanceId: sim.nodes.find((n) => n !== holderOfR1)!.instanceId }));
    // Two reconcile intervals pass: the holder tries, and the fencing gate refuses.
    await holderOfR1.waitForEvent((e) => e.event === "writeRefused", 30_000, marks.get(holderOfR1.name));
    const upAt = Date.now();
    expect(sim.proxy!.mutatingCalls().filter((c) => c.time > downAt && c.time < upAt)).toEqual([]);

    await Promise.all(sim.consul.servers.map((s) => s.restart()));
    await waitUntil("Consul leader after restart", async () => ((await sim.consul.servers[0]!.get<string>("/v1/status/leader")) ? true : undefined), { timeoutMs: 60_000 });
    const after = await routeTargetsConverge(90_000);
    for (const r of ROUTE_NAMES) expect(after.get(r)?.session).toBeTruthy();
  });

  it("an operator destroying the holder's session stops that holder's writes within one watch round trip", async () => {
    const holders = await routeTargetsConverge(60_000);
    const victim = sim.nodeByInstance(holders.get("r2")?.instanceId) as SimNode;
    const session = holders.get("r2")?.session as string;
    const mark = victim.events.length;
    const destroyedAt = Date.now();
    await consulHttp("PUT", `${sim.consul.servers[0]!.httpAddr}/v1/session/destroy/${session}`);
    const lost = await victim.waitForEvent((e) => e.event === "lost" && e.route === "r2", 20_000, mark);
    console.log(`session destroyed: ${victim.name} stopped holding r2 ${eventTime(lost) - destroyedAt} ms later`);
    // The victim's watch normally sees the key free ("sessionInvalidated"). On a loaded machine a
    // peer can acquire it once the lock-delay ends before that read returns: then the victim
    // sees another session on it ("keyTaken"). Either way it must be a peer, and no write follows.
    expect(["sessionInvalidated", "keyTaken"]).toContain(lost.reason);
    if (lost.reason === "keyTaken") expect(lost.newHolder).not.toBe(victim.instanceId);
    expect(writesAfter(victim, eventTime(lost)).filter((c) => c.params.DestinationCidrBlock === "10.200.0.0/16")).toEqual([]);
    await sim.waitForHolders(["r2"], (_r, i) => !!i, 30_000);
    await routeTargetsConverge(30_000);
  });
});
