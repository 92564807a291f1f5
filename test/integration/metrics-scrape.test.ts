import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";
import { waitUntil } from "../support/process.js";
import { matches, parseExposition, type Sample } from "../support/prometheus-text.js";

/**
 * README, "Observing it": /metrics serves these series. Each must be recorded on the code path
 * it describes, in a running agent: two agent processes on real Consul and moto (behind the
 * fault proxy), scraped before and after a check failure that moves the route, AWS calls
 * (one throttled) and Consul requests.
 */

/** The documented series and exactly the labels README gives them. */
const DOCUMENTED: Record<string, string[]> = {
  routeleader_route_leader: ["route"],
  routeleader_transitions_total: ["route", "type", "reason"],
  routeleader_failover_seconds_count: [],
  routeleader_check_passing: ["check"],
  routeleader_check_latency_seconds_count: ["check"],
  routeleader_aws_calls_total: ["action", "outcome"],
  routeleader_aws_call_seconds_count: ["action"],
  routeleader_consul_requests_total: ["op", "outcome"],
  routeleader_errors_total: ["component"],
  routeleader_route_writes_total: ["route", "action"],
};

async function scrape(node: SimNode): Promise<Sample[]> {
  const res = await fetch(`${node.httpUrl}/metrics`);
  expect(res.status).toBe(200);
  return parseExposition(await res.text());
}

/** Sum of the samples of `name` whose labels include `labels`. */
function sum(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => matches(s, name, labels)).reduce((a, s) => a + s.value, 0);
}

let sim: SimCluster;

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "metrics",
    nodes: [
      { name: "m1", az: "us-east-1a", http: true },
      { name: "m2", az: "us-east-1b", http: true },
    ],
    tables: [{ name: "private-a", az: "us-east-1a" }],
    routes: [{ name: "r1", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0", checks: ["alive"], preferredAz: "none" }],
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 1, fall: 2 } },
    extra: { reconcileInterval: "1s" },
    faultProxy: true,
  });
  for (const n of sim.nodes) n.setHealthy(true);
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
  await sim.waitForHolders(["r1"], (_r, i) => !!i, 60_000);
  // Holding r1 says one agent is up; the standby may still be starting its HTTP endpoint.
  for (const n of sim.nodes) {
    await waitUntil(`${n.name} answers /status`, () => n.status().then(() => true, () => undefined), { timeoutMs: 60_000 });
  }
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

describe("/metrics of a running agent", () => {
  it("truth: after a check failure that moves the route, AWS calls (one throttled) and Consul requests, every documented series moved, with the documented labels", async () => {
    const first = (await sim.holders()).get("r1")?.instanceId;
    const oldHolder = sim.nodeByInstance(first) as SimNode;
    const newHolder = sim.nodes.find((n) => n !== oldHolder) as SimNode;
    await waitUntil("the table points at the first holder", async () => ((await sim.routeTarget("private-a", "0.0.0.0/0")) === first ? true : undefined), { timeoutMs: 30_000 });
    const before = { old: await scrape(oldHolder), new: await scrape(newHolder) };

    // A check failure on the holder: it releases r1, the peer acquires it and rewrites the table.
    oldHolder.setHealthy(false);
    await sim.waitForHolders(["r1"], (_r, i) => i === newHolder.instanceId, 30_000);
    await waitUntil("the table points at the new holder", async () => ((await sim.routeTarget("private-a", "0.0.0.0/0")) === newHolder.instanceId ? true : undefined), { timeoutMs: 30_000 });
    // Throttling on the holder's reconcile read: an AWS call with outcome "throttled", an aws error.
    sim.proxy!.throttle("DescribeRouteTables", 2);
    await waitUntil("a throttled DescribeRouteTables", async () => (sim.proxy!.calls({ action: "DescribeRouteTables" }).filter((c) => c.injected === "throttled").length === 2 ? true : undefined), { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 500));
    const after = { old: await scrape(oldHolder), new: await scrape(newHolder) };

    const moved = (side: "old" | "new", name: string, labels: Record<string, string> = {}) => [sum(before[side], name, labels), sum(after[side], name, labels)];
    const both = (name: string, labels: Record<string, string> = {}) => sum(after.old, name, labels) + sum(after.new, name, labels) - sum(before.old, name, labels) - sum(before.new, name, labels);

    // Leadership, transitions, failover time, route writes (election events).
    expect(moved("old", "routeleader_route_leader", { route: "r1" }), "old holder's leader gauge").toEqual([1, 0]);
    expect(moved("new", "routeleader_route_leader", { route: "r1" }), "new holder's leader gauge").toEqual([0, 1]);
    // Exactly one release: a stale snapshot after a confirmed release is not released again (issue #14).
    const released = moved("old", "routeleader_transitions_total", { route: "r1", type: "released", reason: "checkFailed" });
    expect(released[0], "old holder's release, before").toBe(0);
    expect(released[1], "old holder's release, after").toBe(1);
    const acquired = moved("new", "routeleader_transitions_total", { route: "r1", type: "acquired" });
    expect(acquired[1]).toBe(acquired[0]! + 1);
    const failovers = moved("new", "routeleader_failover_seconds_count");
    expect(failovers[1]).toBe(failovers[0]! + 1);
    const writes = moved("new", "routeleader_route_writes_total", { route: "r1" });
    expect(writes[1]).toBeGreaterThan(writes[0]!);

    // Health checks (the health monitor): the verdict and the run time of every run.
    expect(moved("old", "routeleader_check_passing", { check: "alive" }), "old holder's check").toEqual([1, 0]);
    expect(moved("new", "routeleader_check_passing", { check: "alive" }), "new holder's check").toEqual([1, 1]);
    for (const side of ["old", "new"] as const) {
      const runs = moved(side, "routeleader_check_latency_seconds_count", { check: "alive" });
      expect(runs[1], `${side} holder's check runs`).toBeGreaterThan(runs[0]! + 2);
    }

    // AWS calls (the SDK clients' middleware): by action and outcome, and their duration.
    const replaces = moved("new", "routeleader_aws_calls_total", { action: "ReplaceRoute", outcome: "ok" });
    expect(replaces[1]).toBeGreaterThan(replaces[0]!);
    const replaceTimes = moved("new", "routeleader_aws_call_seconds_count", { action: "ReplaceRoute" });
    expect(replaceTimes[1]).toBeGreaterThan(replaceTimes[0]!);
    expect(both("routeleader_aws_calls_total", { action: "DescribeRouteTables", outcome: "ok" })).toBeGreaterThan(0);
    expect(both("routeleader_aws_calls_total", { action: "DescribeRouteTables", outcome: "throttled" })).toBe(2);
    expect(both("routeleader_aws_call_seconds_count", { action: "DescribeRouteTables" })).toBeGreaterThan(2);
    expect(both("routeleader_errors_total", { component: "aws" })).toBeGreaterThanOrEqual(2);

    // Consul requests (the Consul client): by operation and outcome.
    expect(moved("new", "routeleader_consul_requests_total", { op: "kv.acquire", outcome: "ok" })[1]).toBeGreaterThan(moved("new", "routeleader_consul_requests_total", { op: "kv.acquire", outcome: "ok" })[0]!);
    const releases = moved("old", "routeleader_consul_requests_total", { op: "kv.release", outcome: "ok" });
    expect(releases[1], "old holder's ?release requests").toBeGreaterThan(releases[0]!);
    for (const side of ["old", "new"] as const) {
      const updates = moved(side, "routeleader_consul_requests_total", { op: "agent.check.update", outcome: "ok" });
      expect(updates[1], `${side}: TTL check updates`).toBeGreaterThan(updates[0]!);
      const watches = moved(side, "routeleader_consul_requests_total", { op: "kv.watch", outcome: "ok" });
      expect(watches[1], `${side}: blocking reads of the routes prefix`).toBeGreaterThan(watches[0]!);
    }
    for (const op of ["agent.self", "status.leader", "agent.service.register", "session.create"]) expect(sum(after.new, "routeleader_consul_requests_total", { op, outcome: "ok" }), op).toBeGreaterThan(0);

    // Every sample of a documented series carries exactly the documented labels.
    for (const s of [...after.old, ...after.new]) {
      const want = DOCUMENTED[s.name];
      if (want) expect(Object.keys(s.labels).sort(), `${s.name} ${JSON.stringify(s.labels)}`).toEqual([...want].sort());
    }
    for (const name of Object.keys(DOCUMENTED)) expect(after.new.some((s) => s.name === name), `${name} is served`).toBe(true);
  }, 120_000);
});
