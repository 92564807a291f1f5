import { AllocateAddressCommand, CreateNatGatewayCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { interleavedWriters, routeWrites } from "../support/faults/invariants.js";
import { waitUntil } from "../support/process.js";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";

/**
 * Fallback target inside the agent (issue #17 item 2): when no healthy node has held a route
 * for fallbackAfter, one agent — whichever wins the route's Consul lock under its liveness-only
 * session — points the route at the fallback NAT gateway; when a node is healthy again it takes
 * the route back. Two agents, real Consul, moto behind the fault proxy (its log of every route
 * write is the oracle for "one writer at a time").
 */

let sim: SimCluster;
let natGateway: string;
const FALLBACK_AFTER_MS = 12_000; // fast profile: bound = max(3 s, 10 s) + 1 s + 0.5 s = 11.5 s
const table = "private-a";

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "fallback",
    nodes: [
      { name: "f1", az: "us-east-1a" },
      { name: "f2", az: "us-east-1a" },
    ],
    tables: [{ name: table, az: "us-east-1a" }],
    routes: [{ name: "egress", table: { tags: { Name: table } }, destination: "0.0.0.0/0", checks: ["alive"], preferredAz: "none" }],
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 2, fall: 2 } },
    extra: { reconcileInterval: "2s", election: { profile: "fast" } },
    faultProxy: true,
  });
  const allocationId = (await sim.ec2.send(new AllocateAddressCommand({ Domain: "vpc" }))).AllocationId!;
  natGateway = (await sim.ec2.send(new CreateNatGatewayCommand({ SubnetId: sim.nodes[0]!.identity.subnetId, AllocationId: allocationId }))).NatGateway!.NatGatewayId!;
  for (const node of sim.nodes) {
    node.patchConfig({ routes: [{ ...sim.spec.routes[0], fallback: { natGateway }, fallbackAfter: `${FALLBACK_AFTER_MS}ms` }] });
    node.setHealthy(true);
  }
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

describe("fallback target", () => {
  it("egress: all candidates unhealthy → the route points at the fallback NAT gateway within fallbackAfter + one write, never before; a healthy node returns → it takes the route back; one writer at a time", async () => {
    const first = await waitUntil(
      "a healthy holder with the route",
      async () => {
        const holder = sim.nodeByInstance((await sim.holders()).get("egress")?.instanceId);
        return holder && (await sim.routeTarget(table, "0.0.0.0/0")) === holder.instanceId ? holder : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );

    for (const node of sim.nodes) node.setHealthy(false);
    const released = await first.waitForEvent((e) => e.event === "released" && e.route === "egress" && e.role === undefined, 20_000);
    const freeAt = Date.parse(released.time);
    await waitUntil("the route at the fallback", async () => ((await sim.routeTarget(table, "0.0.0.0/0")) === natGateway ? true : undefined), { timeoutMs: FALLBACK_AFTER_MS + 30_000, intervalMs: 100 });
    const toFallback = routeWrites(sim.proxy!.calls(), sim.tableIds.get(table)!).filter((c) => c.params.NatGatewayId === natGateway);
    const firstFallbackWrite = toFallback[0]!;
    const afterFree = firstFallbackWrite.time - freeAt;
    console.log(`route on the fallback ${afterFree} ms after the last healthy holder released it (fallbackAfter ${FALLBACK_AFTER_MS} ms), written by ${firstFallbackWrite.caller}`);
    expect(afterFree).toBeGreaterThanOrEqual(FALLBACK_AFTER_MS);
    // fallbackAfter, the 1 s poll of peers' health, a loop cycle, the acquire and one write (generous on a loaded machine).
    expect(afterFree).toBeLessThan(FALLBACK_AFTER_MS + 6000);
    const fallbackHolder = sim.node(firstFallbackWrite.caller);
    expect((await sim.holders()).get("egress")?.instanceId).toBe(fallbackHolder.instanceId);

    // A node is healthy again: it takes the route back (after rise), and the fallback writer stops writing.
    const returning = sim.nodes.find((n) => n !== first) as SimNode;
    const healthyAt = Date.now();
    returning.setHealthy(true);
    await waitUntil(
      "the returning node holding and pointing the route at itself",
      async () => ((await sim.holders()).get("egress")?.instanceId === returning.instanceId && (await sim.routeTarget(table, "0.0.0.0/0")) === returning.instanceId ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    console.log(`route back on ${returning.name} ${Date.now() - healthyAt} ms after its check passed again (rise 2 × 200 ms)`);
    const handedBack = await fallbackHolder.waitForEvent((e) => e.event === "released" && e.route === "egress" && e.role === "fallback", 10_000);
    expect(handedBack.reason).toBe("failback");

    // Let reconciles and re-asserts run, then read the write log: no fallback write after the hand-back,
    // and no node writing the route while another had taken it over.
    await new Promise((r) => setTimeout(r, 4000));
    const writes = routeWrites(sim.proxy!.calls(), sim.tableIds.get(table)!);
    expect(writes.filter((c) => c.params.NatGatewayId && c.time > Date.parse(handedBack.time))).toEqual([]);
    expect(writes.filter((c) => c.time > Date.parse(handedBack.time) && c.caller !== returning.name)).toEqual([]);
    expect(interleavedWriters(sim.proxy!.calls(), 60_000)).toEqual([]);
  });
});
