import { rmSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";

/**
 * Routes bound to different checks, end to end: real agents, real Consul, moto. A failing check
 * releases only the routes that name it; a booting node does not contend before its checks
 * have passed `rise` times.
 */

let sim: SimCluster;

const mark = (node: SimNode, check: string, ok: boolean) => (ok ? writeFileSync(node.file(check), "ok") : rmSync(node.file(check), { force: true }));

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "checks",
    nodes: [
      { name: "x", az: "us-east-1a" },
      { name: "y", az: "us-east-1a" },
    ],
    tables: [{ name: "private-a", az: "us-east-1a" }],
    routes: [
      { name: "egress", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0", checks: ["ca"] },
      { name: "service", table: { tags: { Name: "private-a" } }, destination: "10.250.0.0/16", checks: ["cb"] },
    ],
    checks: {
      ca: { type: "command", command: ["test", "-e", "{dir}/ca"], every: "200ms", timeout: "500ms", rise: 1, fall: 2 },
      cb: { type: "command", command: ["test", "-e", "{dir}/cb"], every: "200ms", timeout: "500ms", rise: 5, fall: 2 },
    },
  });
  for (const n of sim.nodes) {
    mark(n, "ca", true);
    mark(n, "cb", true);
  }
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

describe("routes on different checks", () => {
  it("a booting node does not contend before its checks have passed rise times", async () => {
    const x = sim.node("x");
    mark(x, "cb", false);
    await sim.startAgent("x");
    await sim.waitForHolders(["egress"], (_r, i) => i === x.instanceId, 60_000);
    // cb has never passed on x: nobody holds "service" yet.
    await x.waitForEvent((e) => e.msg === "health check ran" && e.check === "cb", 10_000);
    expect((await sim.holders()).get("service")?.instanceId).toBeUndefined();

    const since = x.events.length;
    mark(x, "cb", true);
    const acquired = await x.waitForEvent((e) => e.event === "acquired" && e.route === "service", 30_000, since);
    const passing = x.events.slice(since).find((e) => e.msg === "health check passing" && e.check === "cb");
    expect(passing).toBeDefined();
    expect(Date.parse(acquired.time)).toBeGreaterThanOrEqual(Date.parse(passing!.time));
    const runsBefore = x.events.slice(since).filter((e) => e.msg === "health check ran" && e.check === "cb" && Date.parse(e.time) <= Date.parse(acquired.time));
    expect(runsBefore.length).toBeGreaterThanOrEqual(5);
  });

  it("failing one check releases exactly its route; the route on the other check stays held", async () => {
    const [x, y] = [sim.node("x"), sim.node("y")];
    await sim.startAgent("y");
    await y.waitForEvent((e) => e.msg === "agent running", 30_000);
    await sim.waitForHolders(["egress", "service"], (_r, i) => i === x.instanceId, 30_000);
    const since = x.events.length;

    mark(x, "ca", false);
    const released = await x.waitForEvent((e) => e.event === "released" && e.route === "egress", 20_000, since);
    expect(released.reason).toBe("checkFailed");
    const holders = await sim.waitForHolders(["egress"], (_r, i) => i === y.instanceId, 30_000);
    expect(holders.get("service")?.instanceId).toBe(x.instanceId);
    expect(x.events.slice(since).filter((e) => e.route === "service" && ["released", "lost"].includes(e.event as string))).toEqual([]);
    mark(x, "ca", true);
  });
});
