import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../agent/config/index.js";
import type { Election } from "../../agent/election/index.js";
import type { HealthMonitor } from "../../agent/health/index.js";
import { createEmfEmitter, startEmfMetrics, type EmfElection, type EmfHealth } from "../../agent/observe/emf.js";
import { emfDocument } from "../../agent/observe/emf-format.js";

// The agent's own parts fit the emitter as they are (the one line in agent.ts needs no adapter).
const electionFits = (e: Election): EmfElection => e;
const healthFits = (h: HealthMonitor): EmfHealth => h;
void electionFits;
void healthFits;

const UNITS = new Set(["Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"]);

/** Checks one line against the EMF specification's rules; returns the parsed document. */
function assertValidEmf(line: string): Record<string, unknown> {
  expect(line).not.toContain("\n");
  const doc = JSON.parse(line) as Record<string, unknown>;
  const meta = doc._aws as { Timestamp: unknown; CloudWatchMetrics: unknown };
  expect(meta).toBeTypeOf("object");
  expect(Number.isInteger(meta.Timestamp)).toBe(true);
  expect(Array.isArray(meta.CloudWatchMetrics)).toBe(true);
  for (const directive of meta.CloudWatchMetrics as Record<string, unknown>[]) {
    expect(Object.keys(directive).sort()).toEqual(["Dimensions", "Metrics", "Namespace"]);
    expect(directive.Namespace).toMatch(/^[^\s].{0,254}$/);
    expect((directive.Namespace as string).startsWith("AWS/")).toBe(false);
    const sets = directive.Dimensions as string[][];
    expect(Array.isArray(sets)).toBe(true);
    for (const set of sets) {
      expect(set.length).toBeLessThanOrEqual(30);
      for (const d of set) expect(typeof doc[d]).toBe("string");
    }
    const metrics = directive.Metrics as { Name: string; Unit: string }[];
    expect(metrics.length).toBeGreaterThan(0);
    expect(metrics.length).toBeLessThanOrEqual(100);
    for (const m of metrics) {
      expect(Object.keys(m).sort()).toEqual(["Name", "Unit"]);
      expect(UNITS.has(m.Unit)).toBe(true);
      expect(typeof doc[m.Name]).toBe("number");
    }
  }
  return doc;
}

const clock = { now: () => 1_000_000, wallNow: () => 1_764_700_000_000 };
const holder = { instanceId: "i-0b", az: "us-east-1b", eni: "eni-0b", privateIp: "10.0.0.2", session: "s-b", lockIndex: 3, acquiredAt: "", agentVersion: "0.1.0" };

function emitter(extra: Partial<Parameters<typeof createEmfEmitter>[0]> = {}) {
  const lines: string[] = [];
  const e = createEmfEmitter({ settings: { emf: true, namespace: "routeleader", output: "stdout" }, cluster: "prod-nat", instanceId: "i-0a", az: "us-east-1a", routes: ["nat-a", "nat-b"], clock, write: (l) => lines.push(l), ...extra });
  return { e, lines, docs: () => lines.map(assertValidEmf) };
}

describe("CloudWatch EMF", () => {
  it("egress: every election event becomes one valid EMF line with the metric it names", () => {
    const { e, docs } = emitter();
    e.listener({ type: "acquired", route: "nat-a", lockIndex: 4, previousHolder: "i-0b", waitedMs: 5821.4, at: 1 });
    e.listener({ type: "routeWritten", route: "nat-a", action: "replace", tables: ["rtb-0a"], ms: 143.2, at: 2 });
    e.listener({ type: "writeFailed", route: "nat-a", fatal: false, reason: "RequestLimitExceeded", retryInMs: 200, at: 3 });
    e.listener({ type: "writeRefused", route: "nat-a", reason: "lock not proven", at: 4 });
    e.listener({ type: "blocked", route: "nat-a", reason: "UnauthorizedOperation", forMs: 60_000, at: 5 });
    e.listener({ type: "released", route: "nat-a", reason: "checkFailed", heldMs: 1000, at: 6 });
    e.listener({ type: "lost", route: "nat-b", reason: "sessionInvalidated", at: 7 });
    const d = docs();
    expect(d).toHaveLength(7);
    expect(d[0]).toMatchObject({
      Cluster: "prod-nat",
      Route: "nat-a",
      HolderChanges: 1,
      FailoverMs: 5821,
      instanceId: "i-0a",
      az: "us-east-1a",
      previousHolder: "i-0b",
      _aws: { Timestamp: clock.wallNow(), CloudWatchMetrics: [{ Namespace: "routeleader", Dimensions: [["Cluster"], ["Cluster", "Route"]], Metrics: [{ Name: "HolderChanges", Unit: "Count" }, { Name: "FailoverMs", Unit: "Milliseconds" }] }] },
    });
    expect(d[1]).toMatchObject({ RouteWrites: 1, RouteWriteLatency: 143, route: "nat-a", _aws: { CloudWatchMetrics: [{ Dimensions: [["Cluster"]] }] } });
    expect(d[2]).toMatchObject({ RouteWriteFailures: 1, fatal: false });
    expect(d[3]).toMatchObject({ RouteWritesRefused: 1 });
    expect(d[4]).toMatchObject({ RoutesGivenUp: 1, reason: "UnauthorizedOperation", forMs: 60_000 });
    expect(d[5]).toMatchObject({ RoutesReleased: 1, reason: "checkFailed" });
    expect(d[6]).toMatchObject({ RoutesLost: 1, reason: "sessionInvalidated" });
  });

  it("egress: the heartbeat says the agent is up, what it holds, routes without a holder, failing checks and the lease margin", () => {
    const election = { heldRoutes: () => ["nat-a"], routeStates: () => [{ route: "nat-a", phase: "holding", held: { session: "s-a" } }, { route: "nat-b", phase: "following" }], leaseDeadline: () => clock.now() + 7_400 };
    const health = { states: () => [{ name: "egress", passing: true }, { name: "forwarding", passing: false }] };
    const { e, docs } = emitter({ election, health });
    e.listener({ type: "leaderChanged", route: "nat-a", holder: { ...holder, instanceId: "i-0a" }, at: 1 });
    e.listener({ type: "leaderChanged", route: "nat-b", at: 1 });
    e.heartbeat();
    const [beat, egress, forwarding] = docs();
    expect(beat).toMatchObject({ AgentUp: 1, RoutesHeld: 1, RoutesWithoutHolder: 1, ChecksFailing: 1, LeaseMarginMs: 7400, held: ["nat-a"], event: "heartbeat" });
    expect(egress).toMatchObject({ Check: "egress", CheckPassing: 1, _aws: { CloudWatchMetrics: [{ Dimensions: [["Cluster", "Check"]] }] } });
    expect(forwarding).toMatchObject({ Check: "forwarding", CheckPassing: 0 });
    // A released key (its JSON kept) has no holder; a route this node has not heard of yet is not counted.
    e.listener({ type: "leaderChanged", route: "nat-b", holder: { ...holder, releasedAt: "2026-12-02T10:00:00Z" }, at: 2 });
    e.listener({ type: "acquired", route: "nat-b", lockIndex: 5, waitedMs: 10, at: 3 });
    e.heartbeat();
    expect(docs().at(-3)).toMatchObject({ RoutesWithoutHolder: 0 });
  });

  it("egress: a node that holds nothing reports no lease margin", () => {
    const { e, docs } = emitter({ election: { heldRoutes: () => [], routeStates: () => [], leaseDeadline: () => 0 } });
    e.heartbeat();
    expect(docs()[0]).not.toHaveProperty("LeaseMarginMs");
    expect((docs()[0]!._aws as { CloudWatchMetrics: { Metrics: { Name: string }[] }[] }).CloudWatchMetrics[0]!.Metrics.map((m) => m.Name)).toEqual(["AgentUp", "RoutesHeld", "RoutesWithoutHolder", "ChecksFailing"]);
  });

  it("egress: the format refuses what CloudWatch would reject", () => {
    const ok = { namespace: "routeleader", timestamp: 1, dimensions: { Cluster: "c" }, metrics: [{ name: "M", unit: "Count" as const, value: 1 }] };
    expect(() => emfDocument({ ...ok, namespace: "AWS/EC2" })).toThrow(/AWS\//);
    expect(() => emfDocument({ ...ok, metrics: [] })).toThrow(/1 to 100/);
    expect(() => emfDocument({ ...ok, metrics: [{ name: "M", unit: "Count", value: Number.NaN }] })).toThrow(/finite/);
    expect(() => emfDocument({ ...ok, dimensionSets: [["Cluster", "Route"]] })).toThrow(/Route has no value/);
    expect(() => emfDocument({ ...ok, metrics: [{ name: "Cluster", unit: "Count", value: 1 }] })).toThrow(/clashes/);
  });

  it("egress: opt-in: off by default in the config, nothing subscribed or written; on, it writes to the file named by output", () => {
    const base = { cluster: "prod-nat", routes: [{ name: "nat-a", table: { id: "rtb-0a" }, destination: "0.0.0.0/0" }] };
    const off = validateConfig(base, "test");
    expect(off.observe.cloudwatch).toEqual({ emf: false, namespace: "routeleader", output: "stdout" });
    let subscribed = 0;
    const election = { on: () => void subscribed++, heldRoutes: () => [], routeStates: () => [], leaseDeadline: () => 0 };
    startEmfMetrics({ config: off, identity: { instanceId: "i-0a", az: "us-east-1a" }, election, clock }).stop();
    expect(subscribed).toBe(0);

    const dir = mkdtempSync(join(tmpdir(), "rl-emf-"));
    try {
      const file = join(dir, "emf.log");
      const on = validateConfig({ ...base, observe: { cloudwatch: { emf: true, namespace: "nat/prod", output: file } } }, "test");
      const started = startEmfMetrics({ config: on, identity: { instanceId: "i-0a", az: "us-east-1a" }, election, clock });
      expect(subscribed).toBe(1);
      started.emitter!.heartbeat();
      started.stop();
      const lines = readFileSync(file, "utf8").trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(assertValidEmf(lines[0]!)).toMatchObject({ AgentUp: 1, _aws: { CloudWatchMetrics: [{ Namespace: "nat/prod" }] } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => validateConfig({ ...base, observe: { cloudwatch: { emf: true, namespace: "AWS/EC2" } } }, "test")).toThrow(/AWS\//);
    expect(() => validateConfig({ ...base, observe: { cloudwatch: { output: "emf.log" } } }, "test")).toThrow(/absolute/);
  });
});
