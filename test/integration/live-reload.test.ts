import { CreateRouteTableCommand, CreateTagsCommand, CreateVpcCommand, DeleteTagsCommand, DescribeRouteTablesCommand, ReplaceRouteCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
