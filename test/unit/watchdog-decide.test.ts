import { describe, expect, it } from "vitest";
import { decide, parseFallback, type RouteFacts } from "../../agent/watchdog/decide.js";
import { fallbackFor, settingsFromEnv } from "../../agent/watchdog/settings.js";

const NAT = { natGatewayId: "nat-0aaaaaaaaaaaaaaa1" };
const ENI = { networkInterfaceId: "eni-0bbbbbbbbbbbbbbb2" };
const base: RouteFacts = { tableId: "rtb-01", destination: "0.0.0.0/0", present: true, state: "active", target: { instanceId: "i-01" }, instanceState: "running", fallback: NAT };

// [title, facts, expected decision (partial)]
const table: [string, Partial<RouteFacts>, Record<string, unknown>][] = [
  ["running target: left alone", {}, { kind: "leave", reason: "target running" }],
  ["pending target (restarting): left alone", { instanceState: "pending" }, { kind: "leave", reason: "target running" }],
  ["running target reported blackhole: still left alone", { state: "blackhole" }, { kind: "leave", reason: "target running" }],
  ["stopped target: repointed at the NAT gateway", { instanceState: "stopped", state: "blackhole" }, { kind: "repoint", to: NAT, why: "instance stopped or terminated", from: "i-01" }],
  ["stopping target: repointed", { instanceState: "stopping" }, { kind: "repoint", to: NAT }],
  ["shutting-down target: repointed", { instanceState: "shutting-down" }, { kind: "repoint", to: NAT }],
  ["terminated target: repointed at the ENI fallback", { instanceState: "terminated", state: "blackhole", fallback: ENI }, { kind: "repoint", to: ENI, why: "instance stopped or terminated" }],
  ["instance EC2 no longer knows: repointed", { instanceState: "absent", state: "blackhole" }, { kind: "repoint", to: NAT }],
  ["blackhole at a detached ENI: repointed", { target: { networkInterfaceId: "eni-0ccccccccccccccc3" }, state: "blackhole" }, { kind: "repoint", why: "blackhole", from: "eni-0ccccccccccccccc3" }],
  ["blackhole at a deleted NAT gateway: repointed", { target: { natGatewayId: "nat-0ddddddddddddddd4" }, state: "blackhole" }, { kind: "repoint", why: "blackhole" }],
  ["active ENI without instance: not the watchdog's", { target: { networkInterfaceId: "eni-0ccccccccccccccc3" }, state: "active" }, { kind: "leave", reason: "target is not an instance" }],
  ["internet gateway: not the watchdog's", { target: { gatewayId: "igw-01" } }, { kind: "leave", reason: "target is not an instance" }],
  ["already on the NAT gateway fallback", { target: { natGatewayId: NAT.natGatewayId } }, { kind: "leave", reason: "already on fallback", onFallback: true, deadTarget: false }],
  ["already on the ENI fallback", { target: { networkInterfaceId: ENI.networkInterfaceId }, fallback: ENI }, { kind: "leave", reason: "already on fallback", onFallback: true }],
  ["fallback itself a blackhole: nothing better to do", { target: { natGatewayId: NAT.natGatewayId }, state: "blackhole" }, { kind: "leave", reason: "fallback is a blackhole", onFallback: true, deadTarget: true }],
  ["dead target, no fallback configured: left, counted dead", { instanceState: "stopped", fallback: undefined }, { kind: "leave", reason: "no fallback configured", deadTarget: true }],
  ["route missing: never created", { present: false, target: {} }, { kind: "leave", reason: "route missing" }],
];

describe("watchdog decide()", () => {
  for (const [title, facts, expected] of table) {
    it(`egress: ${title}`, () => {
      const r = { ...base, ...facts } as RouteFacts;
      if ("fallback" in facts && facts.fallback === undefined) delete r.fallback;
      expect(decide(r)).toMatchObject(expected);
    });
  }

  it("egress: never repoints a route whose target instance is pending or running, whatever else is true", () => {
    for (const instanceState of ["pending", "running"]) for (const state of ["active", "blackhole"]) for (const fallback of [NAT, ENI, undefined]) {
      const d = decide({ ...base, instanceState, state, ...(fallback ? { fallback } : { fallback: undefined }) });
      expect(d.kind).toBe("leave");
    }
  });
});

describe("watchdog settings", () => {
  it("egress: reads the function's environment", () => {
    const s = settingsFromEnv({ ROUTELEADER_CLUSTER: "prod", ROUTELEADER_TABLE_IDS: "rtb-0a, rtb-0b", ROUTELEADER_FALLBACKS: "rtb-0a=nat-0aaaaaaaaaaaaaaa1,*=eni-0bbbbbbbbbbbbbbb2", ROUTELEADER_GRACE_SECONDS: "5" });
    expect(s).toMatchObject({ cluster: "prod", tableIds: ["rtb-0a", "rtb-0b"], destinations: ["0.0.0.0/0"], graceMs: 5000, namespace: "routeleader", eventBus: "default" });
    expect(fallbackFor(s, "rtb-0a", {}, "0.0.0.0/0")).toEqual(NAT);
    expect(fallbackFor(s, "rtb-0b", {}, "0.0.0.0/0")).toEqual(ENI);
    // The table's own tag wins over the function's setting.
    expect(fallbackFor(s, "rtb-0a", { "routeleader:fallback:0.0.0.0/0": "nat-0eeeeeeeeeeeeeee5" }, "0.0.0.0/0")).toEqual({ natGatewayId: "nat-0eeeeeeeeeeeeeee5" });
    expect(settingsFromEnv({ ROUTELEADER_CLUSTER: "c", ROUTELEADER_TABLE_TAG: "routeleader/managed=c", ROUTELEADER_EVENT_BUS: "none" })).toMatchObject({ tableTag: { key: "routeleader/managed", value: "c" }, tableIds: [] });
    expect(settingsFromEnv({ ROUTELEADER_CLUSTER: "c", ROUTELEADER_TABLE_TAG: "k=v", ROUTELEADER_EVENT_BUS: "none" }).eventBus).toBeUndefined();
  });

  it("egress: refuses settings that would select nothing or name a bad fallback", () => {
    expect(() => settingsFromEnv({})).toThrow(/ROUTELEADER_CLUSTER/);
    expect(() => settingsFromEnv({ ROUTELEADER_CLUSTER: "c" })).toThrow(/manages no table/);
    expect(() => settingsFromEnv({ ROUTELEADER_CLUSTER: "c", ROUTELEADER_TABLE_IDS: "rtb-0a", ROUTELEADER_FALLBACKS: "rtb-0a=igw-0123456789" })).toThrow(/NAT gateway/);
    expect(() => settingsFromEnv({ ROUTELEADER_CLUSTER: "c", ROUTELEADER_TABLE_IDS: "rtb-0a", ROUTELEADER_GRACE_SECONDS: "-1" })).toThrow(/GRACE/);
    expect(parseFallback("nat-0123")).toBeUndefined();
    expect(parseFallback(" eni-0123456789abcdef0 ")).toEqual({ networkInterfaceId: "eni-0123456789abcdef0" });
  });
});
