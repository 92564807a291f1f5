import { existsSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitUntil } from "../support/process.js";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";

/**
 * Observability of a failover from a real agent (issue #17 item 4): with
 * observe.cloudwatch.emf and observe.eventbridge on, the node that takes the route over writes
 * the EMF holder-change line (HolderChanges, FailoverMs per Route) and sends one
 * `routeleader route moved` event through EventBridge's PutEvents (moto, behind the fault proxy,
 * whose log shows the call and its caller).
 */

let sim: SimCluster;

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "events",
    nodes: [
      { name: "v1", az: "us-east-1a" },
      { name: "v2", az: "us-east-1a" },
    ],
    tables: [{ name: "private-a", az: "us-east-1a" }],
    routes: [{ name: "egress", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0", checks: ["alive"], preferredAz: "none" }],
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 1, fall: 2 } },
    extra: { reconcileInterval: "2s" },
    faultProxy: true,
  });
  for (const node of sim.nodes) {
    node.patchConfig({ observe: { cloudwatch: { emf: true, output: node.file("emf.log") }, eventbridge: { enabled: true } } });
    node.setHealthy(true);
  }
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

const emfLines = (node: SimNode) => (existsSync(node.file("emf.log")) ? readFileSync(node.file("emf.log"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : []);
const movedEvents = (caller: string) =>
  sim.proxy!
    .calls({ caller, action: "PutEvents" })
    .filter((c) => c.status === 200)
    .flatMap((c) => ((c.json as { Entries?: { Source: string; DetailType: string; Detail: string; EventBusName: string }[] }).Entries ?? []).map((e) => ({ ...e, detail: JSON.parse(e.Detail) as Record<string, unknown> })));

describe("metrics and events of a failover", () => {
  it("egress: on a failover the new holder writes the EMF holder-change metric and sends a route-moved event to EventBridge", async () => {
    const first = await waitUntil(
      "a holder with the route",
      async () => {
        const holder = sim.nodeByInstance((await sim.holders()).get("egress")?.instanceId);
        return holder && (await sim.routeTarget("private-a", "0.0.0.0/0")) === holder.instanceId ? holder : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const other = sim.nodes.find((n) => n !== first) as SimNode;
    first.setHealthy(false);
    await sim.waitForHolders(["egress"], (_r, id) => id === other.instanceId, 30_000);

    const event = await waitUntil("the route-moved event of the new holder", async () => movedEvents(other.name).find((e) => e.detail.from === first.instanceId), { timeoutMs: 20_000, intervalMs: 200 });
    expect(event).toMatchObject({ Source: "routeleader.agent", DetailType: "routeleader route moved", EventBusName: "default" });
    expect(event.detail).toMatchObject({ cluster: "events", actor: "agent", route: "egress", destination: "0.0.0.0/0", routeTables: [sim.tableIds.get("private-a")], from: first.instanceId, to: other.instanceId, instanceId: other.instanceId, az: "us-east-1a" });

    const metric = await waitUntil("the EMF holder-change line of the new holder", async () => emfLines(other).find((d) => d.HolderChanges === 1 && d.previousHolder === first.instanceId), { timeoutMs: 20_000, intervalMs: 200 });
    expect(metric).toMatchObject({ Cluster: "events", Route: "egress", instanceId: other.instanceId, _aws: { CloudWatchMetrics: [{ Namespace: "routeleader", Dimensions: [["Cluster"], ["Cluster", "Route"]] }] } });
    expect(typeof metric.FailoverMs).toBe("number");
    // The old holder released: its own EMF line says so; it sent no event for this move.
    await waitUntil("the old holder's release line", async () => emfLines(first).find((d) => d.RoutesReleased === 1 && d.reason === "checkFailed"), { timeoutMs: 20_000, intervalMs: 200 });
    expect(movedEvents(first.name).filter((e) => e.detail.to === other.instanceId)).toEqual([]);
  });
});
