import { describe, expect, it } from "vitest";
import type { ProxyCall } from "../support/fault-proxy.js";
import { heldButNotServed, interleavedWriters, reportedHoldsDisagree, routeChanges, routeWrites, splitBrainWrites, type RouteSample } from "../support/faults/invariants.js";
import { holderAt, type Claim } from "../support/faults/systems.js";

const write = (caller: string, time: number, instance: string, status = 200): ProxyCall => ({
  time,
  answeredAt: time,
  caller,
  service: "ec2",
  action: "ReplaceRoute",
  params: { RouteTableId: "rtb-1", InstanceId: instance },
  mutating: true,
  status,
});

const claims: Claim[] = [
  { host: "h1", t: 100, kind: "acquire" },
  { host: "h2", t: 500, kind: "acquire" },
  { host: "h2", t: 900, kind: "release" },
];

describe("fault-suite invariants", () => {
  it("names the holder from claims: the latest acquire not released since", () => {
    expect(holderAt(claims, 50)).toBeUndefined();
    expect(holderAt(claims, 200)).toBe("h1");
    expect(holderAt(claims, 600)).toBe("h2");
    expect(holderAt(claims, 950)).toBeUndefined();
  });

  it("names the holder from claims logged in one millisecond by their order (BACKUP then MASTER drained from a FIFO)", () => {
    const drained: Claim[] = [
      { host: "h3", t: 100, kind: "release", detail: "BACKUP" },
      { host: "h3", t: 100, kind: "acquire" },
    ];
    expect(holderAt(drained, 100)).toBe("h3");
    expect(holderAt([...drained, { host: "h3", t: 100, kind: "release", detail: "BACKUP" }], 100)).toBeUndefined();
  });

  it("counts a write by a holder that another host has since replaced as split-brain", () => {
    const writes = [write("h1", 150, "i-1"), write("h2", 510, "i-2"), write("h1", 700, "i-1"), write("h2", 1000, "i-2"), write("h3", 120, "i-3")];
    expect(splitBrainWrites(writes, claims).map((w) => `${w.caller}@${w.time}`)).toEqual(["h1@700", "h2@1000", "h3@120"]);
  });

  it("counts route target changes from successful writes only, so a flip back is two changes", () => {
    expect(routeChanges([write("h2", 1, "i-2"), write("h2", 2, "i-2")], "i-1")).toBe(1);
    expect(routeChanges([write("h2", 1, "i-2"), write("h1", 2, "i-1")], "i-1")).toBe(2);
    expect(routeChanges([write("h2", 1, "i-2", 503)], "i-1")).toBe(0);
  });

  it("keeps only route writes to the table under test", () => {
    const other = { ...write("h1", 1, "i-1"), params: { RouteTableId: "rtb-2", InstanceId: "i-1" } };
    const describe = { ...write("h1", 1, "i-1"), action: "DescribeRouteTables", mutating: false };
    expect(routeWrites([write("h1", 1, "i-1"), other, describe], "rtb-1")).toHaveLength(1);
  });
});

describe("liveness invariants (issue #14), on recorded observations", () => {
  const sample = (t: number, over: Partial<RouteSample> = {}): RouteSample => ({ t, route: "r1", holder: "i-1", session: "s1", lockIndex: 1, target: "igw-1", ...over });

  it("held but not served: only past the failover bound, and not while the holder releases", () => {
    // Lost acquire answer: i-1 holds the key from t=0, the table keeps pointing at the gateway.
    const stuck = [0, 1000, 5000, 8000, 9000, 12_000].map((t) => sample(t));
    expect(heldButNotServed(stuck, 7000)).toEqual([expect.objectContaining({ invariant: "heldNotServed", route: "r1", node: "i-1", from: 8000, to: 12_000 })]);
    // Written within the bound: fine.
    const served = [sample(0), sample(3000, { target: "i-1" }), sample(20_000, { target: "i-1" })];
    expect(heldButNotServed(served, 7000)).toEqual([]);
    // The holder's ENI counts as pointing at it.
    expect(heldButNotServed([sample(0), sample(9000, { target: "eni-1", holderTargets: ["i-1", "eni-1"] })], 7000)).toEqual([]);
    // Releasing (a failed write being given up): not a violation while it says so.
    expect(heldButNotServed([sample(0), sample(9000, { holderReleasing: true }), sample(10_000, { holder: undefined, session: undefined })], 7000)).toEqual([]);
  });

  it("held but not served: the bound runs from when the route stopped being served, so a long hold whose route is pointed away (drift) and repaired within the bound is fine", () => {
    // i-1 has served r1 for a minute; at t=60 s someone points the table at the gateway; i-1 repairs it 2 s later.
    const drift = [sample(0, { target: "i-1" }), sample(30_000, { target: "i-1" }), sample(60_000), sample(61_000), sample(62_000, { target: "i-1" })];
    expect(heldButNotServed(drift, 7000)).toEqual([]);
    // Not repaired: a violation once it has been unserved for longer than the bound.
    const unrepaired = [sample(0, { target: "i-1" }), sample(60_000), sample(65_000), sample(68_000), sample(70_000)];
    expect(heldButNotServed(unrepaired, 7000)).toEqual([expect.objectContaining({ invariant: "heldNotServed", node: "i-1", from: 68_000, to: 70_000 })]);
  });

  it("held but not served: a new session or lockIndex starts a new hold; a free key is never a violation", () => {
    const samples = [sample(0), sample(6000), sample(7000, { session: "s2", lockIndex: 2 }), sample(13_000, { session: "s2", lockIndex: 2 }), sample(20_000, { holder: undefined, session: undefined })];
    expect(heldButNotServed(samples, 7000)).toEqual([]);
    const other = [sample(0, { route: "r2" }), sample(8000, { route: "r2" }), sample(8000, { target: "i-1" })];
    expect(heldButNotServed(other, 7000).map((v) => v.route)).toEqual(["r2"]);
  });

  it("reported holds: disagreement up to the tolerance is fine, longer is a violation", () => {
    const consul = [
      { t: 0, holders: { r1: "i-1" } },
      { t: 1000, holders: { r1: "i-1" } },
      { t: 5000, holders: { r1: "i-1" } },
      { t: 6000, holders: { r1: "i-2" } },
    ];
    // Failed release: i-1 says it holds nothing from t=500 on, Consul says it does until t=6000.
    const reports = [
      { t: 0, node: "i-1", holds: ["r1"] },
      { t: 500, node: "i-1", holds: [] },
      { t: 2600, node: "i-1", holds: [] },
      { t: 6100, node: "i-1", holds: [] },
    ];
    const v = reportedHoldsDisagree(consul, reports, 2000);
    // Certain from i-1's report at 500 to its last report showing it (2600): the one at 6100 agrees.
    expect(v).toEqual([expect.objectContaining({ invariant: "holdsDisagree", node: "i-1", route: "r1", from: 500, to: 2600 })]);
    expect(v[0]?.detail).toMatch(/Consul shows i-1 holding r1, its status does not for 2100 ms/);
    // Lagging by 1.5 s (a watch round) is tolerated.
    const lag = [
      { t: 0, node: "i-2", holds: [] },
      { t: 7500, node: "i-2", holds: ["r1"] },
    ];
    expect(reportedHoldsDisagree(consul, lag, 2000)).toEqual([]);
  });

  it("reported holds: the disagreement is measured between observations that show it, not across the gap to the next sample", () => {
    // Samples every ~600 ms under load: the node lags Consul at t=0..1800 (observed 1800 ms), agrees at 2400.
    const consul = [0, 600, 1200, 1800, 2400].map((t) => ({ t, holders: { r1: "i-1" } }));
    const reports = [0, 600, 1200, 1800].map((t) => ({ t, node: "i-1", holds: [] as string[] })).concat([{ t: 2400, node: "i-1", holds: ["r1"] }]);
    expect(reportedHoldsDisagree(consul, reports, 2000)).toEqual([]);
    // Seen for longer than the tolerance: a violation, from the first to the last observation showing it.
    const longer = [0, 600, 1200, 1800, 2400, 3000].map((t) => ({ t, node: "i-1", holds: [] as string[] })).concat([{ t: 3600, node: "i-1", holds: ["r1"] }]);
    const consulLonger = [0, 600, 1200, 1800, 2400, 3000, 3600].map((t) => ({ t, holders: { r1: "i-1" } }));
    expect(reportedHoldsDisagree(consulLonger, longer, 2000)).toEqual([expect.objectContaining({ node: "i-1", route: "r1", from: 0, to: 3000 })]);
    // Two short lags with no observation of the pair for longer than the tolerance between them
    // (the recorder stalled): not one long disagreement.
    const gapConsul = [0, 300, 4000, 4300].map((t) => ({ t, holders: { r1: "i-1" } }));
    const gapReports = [0, 4000].map((t) => ({ t, node: "i-1", holds: [] as string[] })).concat([300, 4300].map((t) => ({ t, node: "i-1", holds: ["r1"] })));
    expect(reportedHoldsDisagree(gapConsul, gapReports, 2000, 2000)).toEqual([]);
    const stalled = [0, 4000, 4300].map((t) => ({ t, holders: { r1: "i-1" } }));
    const stalledReports = [0, 4000].map((t) => ({ t, node: "i-1", holds: [] as string[] })).concat([{ t: 4300, node: "i-1", holds: ["r1"] }]);
    expect(reportedHoldsDisagree(stalled, stalledReports, 2000, 2000)).toEqual([]);
    // Without a gap limit (sparse samples by design), the same record is one long disagreement.
    expect(reportedHoldsDisagree(stalled, stalledReports, 2000)).toHaveLength(1);
  });

  it("reported holds: only the certain span counts, from the last answer of the first observation showing it to the first request of the last one", () => {
    // Slow answers under load: each read was taken somewhere between its request (sent) and its answer (t).
    const consul = [
      { sent: 0, t: 1200, holders: { r1: "i-1" } },
      { sent: 2100, t: 3300, holders: { r1: "i-1" } },
      { sent: 3400, t: 3500, holders: { r1: "i-1" } },
    ];
    const reports = [
      { sent: 0, t: 1100, node: "i-1", holds: [] as string[] },
      { sent: 2100, t: 3200, node: "i-1", holds: [] as string[] },
      { sent: 3400, t: 3450, node: "i-1", holds: ["r1"] },
    ];
    // Seen at midpoints 600 and 2700 (2100 ms apart), but certain only from 1200 to 2100.
    expect(reportedHoldsDisagree(consul, reports, 2000)).toEqual([]);
    // Quick answers over the same span: the disagreement is certain for 2990 ms.
    const quick = [0, 3000].map((sent) => ({ sent, t: sent + 10, holders: { r1: "i-1" } }));
    const quickReports = [0, 3000].map((sent) => ({ sent, t: sent + 10, node: "i-1", holds: [] as string[] }));
    expect(reportedHoldsDisagree(quick, quickReports, 2000)).toEqual([expect.objectContaining({ node: "i-1", route: "r1", from: 10, to: 3000 })]);
    // A stale report (no newer answer from the node) does not stretch the span to a later Consul view.
    const later = [...quick, { sent: 6000, t: 6010, holders: { r1: "i-1" } }];
    expect(reportedHoldsDisagree(later, quickReports, 2000)).toEqual([expect.objectContaining({ from: 10, to: 3000 })]);
  });

  it("reported holds: a node claiming a key Consul gives to nobody is caught; a node without an answer is not compared", () => {
    const consul = [
      { t: 0, holders: { r1: undefined } },
      { t: 4000, holders: { r1: undefined } },
    ];
    expect(reportedHoldsDisagree(consul, [{ t: 0, node: "i-1", holds: ["r1"] }, { t: 3000, node: "i-1", holds: ["r1"] }], 2000)).toEqual([
      expect.objectContaining({ node: "i-1", route: "r1", from: 0, to: 3000 }),
    ]);
    expect(reportedHoldsDisagree(consul, [{ t: 0, node: "i-1", holds: ["r1"] }, { t: 500, node: "i-1", holds: undefined }], 2000)).toEqual([]);
    // Cut off from Consul, the node says it cannot confirm its hold: nothing claimed, nothing compared.
    const stillHeld = [0, 4000].map((t) => ({ t, holders: { r1: "i-1" } }));
    const cutOff = [0, 3000].map((t) => ({ t, node: "i-1", holds: [] as string[], unconfirmed: ["r1"] }));
    expect(reportedHoldsDisagree(stillHeld, cutOff, 2000)).toEqual([]);
    expect(reportedHoldsDisagree(stillHeld, cutOff.map((r) => ({ ...r, unconfirmed: [] })), 2000)).toHaveLength(1);
  });

  it("one writer per route: X … Y … X within the window is two writers; a hand-back after it is not", () => {
    const w = (caller: string, time: number, over: Partial<ProxyCall> = {}) => ({ ...write(caller, time, `i-${caller}`), params: { RouteTableId: "rtb-1", DestinationCidrBlock: "0.0.0.0/0", InstanceId: `i-${caller}` }, ...over });
    expect(interleavedWriters([w("a", 0), w("b", 1000), w("a", 2500)], 3000)).toEqual([expect.objectContaining({ invariant: "twoWriters", node: "a", from: 1000, to: 2500 })]);
    // b's reasserts do not shorten the measure: it is taken from b's takeover.
    expect(interleavedWriters([w("a", 0), w("b", 1000), w("b", 9000), w("a", 9500)], 3000)).toEqual([]);
    // Refused by the proxy (never reached EC2), or refused by EC2: not a write.
    expect(interleavedWriters([w("a", 0), w("b", 1000), w("a", 1500, { status: 500, injected: "5xx" }), w("a", 1600, { status: 400 })], 3000)).toEqual([]);
    // A 5xx from EC2 itself may have executed: it counts.
    expect(interleavedWriters([w("a", 0), w("b", 1000), w("a", 1500, { status: 500 })], 3000)).toHaveLength(1);
    // Other routes, other destinations: separate.
    const other = w("a", 1500, { params: { RouteTableId: "rtb-1", DestinationCidrBlock: "10.0.0.0/8", InstanceId: "i-a" } });
    expect(interleavedWriters([w("a", 0), w("b", 1000), other], 3000)).toEqual([]);
  });

  it("one writer per route: a hand-back Consul shows (the writer holds the key again, seen after the takeover) is not two writers, however soon", () => {
    const w = (caller: string, time: number) => ({ ...write(caller, time, `i-${caller}`), params: { RouteTableId: "rtb-1", DestinationCidrBlock: "0.0.0.0/0", InstanceId: `i-${caller}` } });
    const calls = [w("a", 0), w("b", 1000), w("a", 2500)];
    // b's check failed at once: it released, a took the key back (observed at 2600, asked after b's write) and wrote.
    const seen = [{ route: "rtb-1 0.0.0.0/0", caller: "a", t: 2600 }];
    expect(interleavedWriters(calls, 3000, { holds: seen, graceMs: 1000 })).toEqual([]);
    // Seen holding only before b's takeover, or long after its own write: no evidence, still two writers.
    expect(interleavedWriters(calls, 3000, { holds: [{ route: "rtb-1 0.0.0.0/0", caller: "a", t: 900 }], graceMs: 1000 })).toHaveLength(1);
    expect(interleavedWriters(calls, 3000, { holds: [{ route: "rtb-1 0.0.0.0/0", caller: "a", t: 4000 }], graceMs: 1000 })).toHaveLength(1);
    // Another route's hold is no evidence either.
    expect(interleavedWriters(calls, 3000, { holds: [{ route: "rtb-1 10.0.0.0/8", caller: "a", t: 2600 }], graceMs: 1000 })).toHaveLength(1);
  });
});
