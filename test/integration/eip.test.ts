import { readFileSync, writeFileSync } from "node:fs";
import { AllocateAddressCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { describeEip } from "../../agent/routes/eip.js";
import { waitUntil } from "../support/process.js";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";

/**
 * Stable egress IP: a route names an Elastic IP; whoever holds the route has the address on
 * its primary ENI, so partners that allow-list the NAT's public IP keep working after a
 * failover. Two nodes, one route, moto behind the fault proxy.
 */

let sim: SimCluster;
let allocationId: string;

const eniOf = (node: SimNode) => node.identity.eniId;

async function eipOn(): Promise<string | undefined> {
  return (await describeEip(sim.ec2, allocationId)).networkInterfaceId;
}

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "eip",
    nodes: [
      { name: "e1", az: "us-east-1a" },
      { name: "e2", az: "us-east-1a" },
    ],
    tables: [{ name: "private-a", az: "us-east-1a" }],
    routes: [{ name: "egress", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0", checks: ["alive"], preferredAz: "none" }],
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 1, fall: 2 } },
    extra: { reconcileInterval: "2s" },
    faultProxy: true,
  });
  allocationId = (await sim.ec2.send(new AllocateAddressCommand({ Domain: "vpc" }))).AllocationId!;
  for (const node of sim.nodes) {
    const cfg = parse(readFileSync(node.configPath, "utf8")) as { routes: Record<string, unknown>[] };
    cfg.routes = cfg.routes.map((r) => ({ ...r, eip: allocationId }));
    writeFileSync(node.configPath, stringify(cfg));
    node.setHealthy(true);
  }
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

describe("stable egress IP through failover", () => {
  it("egress: the holder associates the route's Elastic IP with its ENI, and the EIP follows the route on failover", async () => {
    const first = await waitUntil(
      "the route and its Elastic IP on the holder",
      async () => {
        const holder = sim.nodeByInstance((await sim.holders()).get("egress")?.instanceId);
        if (!holder || (await sim.routeTarget("private-a", "0.0.0.0/0")) !== holder.instanceId) return undefined;
        return (await eipOn()) === eniOf(holder) ? holder : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const associations = sim.proxy!.calls({ caller: first.name, action: "AssociateAddress" }).filter((c) => !c.injected);
    expect(associations.length).toBeGreaterThanOrEqual(1);

    const other = sim.nodes.find((n) => n !== first) as SimNode;
    const faultAt = Date.now();
    first.setHealthy(false);
    await waitUntil(
      "the Elastic IP on the new holder",
      async () => ((await sim.holders()).get("egress")?.instanceId === other.instanceId && (await eipOn()) === eniOf(other) ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    console.log(`Elastic IP moved to ${other.name} ${Date.now() - faultAt} ms after ${first.name}'s check was failed (check fall 2 × 200 ms included)`);
    // The old holder sends no association after its release.
    const released = await first.waitForEvent((e) => e.event === "released" && e.route === "egress", 20_000);
    const late = sim.proxy!.calls({ caller: first.name, action: "AssociateAddress" }).filter((c) => !c.injected && c.time > Date.parse(released.time));
    expect(late).toEqual([]);
  });
});
