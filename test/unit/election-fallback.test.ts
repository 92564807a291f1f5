import { describe, expect, it } from "vitest";
import { decide, initialLocal, type KeyView, type RouteLocal, type RouteView } from "../../agent/election/decide.js";
import { applyOutcome } from "../../agent/election/results.js";
import { fallbackMayTake, fallbackRoutes, fallbackShouldYield, type FallbackView } from "../../agent/election/fallback.js";
import { failoverBoundMs, fallbackAfterMs } from "../../agent/config/fallback.js";
import { parseConfig } from "../../agent/config/index.js";
import { FallbackPolicy } from "../../agent/policy/fallback.js";
import { createLogger } from "../../agent/observe/log.js";

/**
 * The fallback writer's rule as a table, then replayed through decide() on a fake clock: it
 * contends for the route's key (with a session bound to liveness only) once the key has been
 * free for fallbackAfter and Consul shows no healthy candidate, and it releases the key as soon
 * as Consul shows one.
 */

const AFTER = 20_000;
const base: FallbackView = { now: 100_000, freeSince: 70_000, fallbackAfterMs: AFTER, healthKnown: true, healthyCandidates: [] };

describe("egress: fallback rule", () => {
  const take: [string, Partial<FallbackView>, boolean, RegExp][] = [
    ["free for longer than fallbackAfter, nobody healthy: take", {}, true, /no healthy candidate for 30000 ms/],
    ["free exactly fallbackAfter: take", { freeSince: 80_000 }, true, /no healthy candidate/],
    ["free for less than fallbackAfter: wait", { freeSince: 90_000 }, false, /free for 10000 ms of 20000/],
    ["held (not free): wait", { freeSince: undefined }, false, /held/],
    ["a healthy candidate (any AZ) exists: leave it to that node", { healthyCandidates: ["i-b"] }, false, /i-b is healthy/],
    ["peers' health not read yet: wait", { healthKnown: false }, false, /not known/],
  ];
  it.each(take)("%s", (_n, over, expected, reason) => {
    const v = fallbackMayTake({ ...base, ...over });
    expect(v.take).toBe(expected);
    expect(v.reason).toMatch(reason);
  });

  const yieldCases: [string, Partial<FallbackView>, boolean][] = [
    ["nobody healthy: keep the fallback", {}, false],
    ["a healthy candidate: release it to that node", { healthyCandidates: ["i-a"] }, true],
    ["health unknown: keep it (Consul will tell)", { healthKnown: false, healthyCandidates: ["i-a"] }, false],
  ];
  it.each(yieldCases)("%s", (_n, over, expected) => {
    expect(fallbackShouldYield({ ...base, freeSince: undefined, ...over }).yield).toBe(expected);
  });
});

describe("egress: fallbackAfter and the failover bound", () => {
  const yaml = (extra: string) => `cluster: c\nroutes:\n  - name: r1\n    table: { id: rtb-0abc }\n    destination: 0.0.0.0/0\n${extra}`;
  it("defaults to the failover bound + 5 s: max(livenessTtl, sessionTtl) + lockDelay + writeTimeout", () => {
    const config = parseConfig(yaml("    fallback: { natGateway: nat-0123456789abcdef0 }\n"), "t.yaml");
    expect(failoverBoundMs(config)).toBe(10_000 + 1200 + 700);
    expect(fallbackAfterMs(config.routes[0] as never, config)).toBe(16_900);
  });
  it("validation refuses a fallbackAfter shorter than the bound, naming the path and the bound", () => {
    expect(() => parseConfig(yaml("    fallback: { natGateway: nat-0123456789abcdef0 }\n    fallbackAfter: 5s\n"), "t.yaml")).toThrow(/t\.yaml:\d+: routes\[0\]\.fallbackAfter: fallbackAfter \(5s\) is shorter than the failover bound \(11900ms/);
  });
  it("the fallback is a NAT gateway or a network interface, nothing else", () => {
    expect(() => parseConfig(yaml("    fallback: { instance: i-0123456789abcdef0 }\n"), "t.yaml")).toThrow(/routes\[0\]\.fallback/);
    expect(() => parseConfig(yaml("    fallback: { natGateway: igw-0123456789abcdef0 }\n"), "t.yaml")).toThrow(/not a NAT gateway id/);
  });
  it("the fallback writer's routes: only routes with a fallback, bound to no check (liveness only), never deleted on release, no EIP", () => {
    const config = parseConfig(yaml("    checks: [] \n    eip: eipalloc-0123456789abcdef0\n    fallback: { networkInterface: eni-0123456789abcdef0 }\n    onRelease: delete\n  - name: r2\n    table: { id: rtb-0def }\n    destination: 0.0.0.0/0\n"), "t.yaml");
    const routes = fallbackRoutes(config);
    expect(routes.map((r) => r.name)).toEqual(["r1"]);
    expect(routes[0]).toMatchObject({ checks: [], onRelease: "keep", fallback: { networkInterface: "eni-0123456789abcdef0" } });
    expect(routes[0]?.eip).toBeUndefined();
  });
});

describe("egress: the fallback election sleeps until fallbackAfter ends (issue #16)", () => {
  it("names freeSince + fallbackAfter while the key is free, the moment the writer may take it; nothing while it is held", () => {
    const config = parseConfig(`cluster: c\nroutes:\n  - name: r1\n    table: { id: rtb-0abc }\n    destination: 0.0.0.0/0\n    fallback: { natGateway: nat-0123456789abcdef0 }\n    fallbackAfter: 20s\n`, "t.yaml");
    const route = config.routes[0]!;
    const policy = new FallbackPolicy(config, { healthyFor: () => [] }, createLogger("silent"));
    const at = policy.nextChangeAt(route, { now: 100_000, freeSince: 90_000 }) as number;
    expect(at).toBe(110_000);
    expect(policy.mayContend(route, { now: at - 1, freeSince: 90_000 })).toBe(false);
    expect(policy.mayContend(route, { now: at, freeSince: 90_000 })).toBe(true);
    expect(policy.nextChangeAt(route, { now: 100_000 })).toBeUndefined();
    expect(policy.nextChangeAt(route, { now: 120_000, freeSince: 90_000 })).toBeUndefined();
  });
});

describe("egress: the fallback writer through decide(), on a fake clock", () => {
  const LOCK_DELAY = 3000;
  const free: KeyView = { lockIndex: 1, modifyIndex: 20 };
  const fallbackHeld: KeyView = { session: "f1", lockIndex: 2, modifyIndex: 30 };
  const candidateHeld: KeyView = { session: "s7", lockIndex: 3, modifyIndex: 40, holder: { instanceId: "i-b", az: "b", eni: "", privateIp: "", session: "s7", lockIndex: 3, acquiredAt: "", agentVersion: "" } };

  /** One cycle of the fallback writer: its policy answers (from the rule above) feed decide(). */
  function cycle(now: number, key: KeyView, local: RouteLocal, healthy: string[]) {
    const fv: FallbackView = { now, fallbackAfterMs: AFTER, healthKnown: true, healthyCandidates: healthy, ...(local.freeSince !== undefined ? { freeSince: local.freeSince } : {}) };
    const yieldNow = fallbackShouldYield(fv).yield;
    const view: RouteView = { route: "r1", now, key, snapshotIndex: 100, session: "f1", leaseOk: true, healthy: true, mayContend: fallbackMayTake(fv).take, reconcileDue: false, ...(local.held && yieldNow ? { handOver: "failback" as const } : {}) };
    return decide(view, local, LOCK_DELAY);
  }

  it("the key free with nobody healthy: no acquire before fallbackAfter, one at it; a healthy candidate appears: release; it takes the key: the writer stands by", () => {
    let local = initialLocal();
    const timeline: string[] = [];
    for (let t = 0; t <= AFTER; t += 1000) {
      const d = cycle(t, free, local, []);
      local = d.local;
      timeline.push(...d.actions.map((a) => `${t}:${a.kind}`));
    }
    expect(timeline).toEqual([`${AFTER}:acquire`]);
    // Consul answered: the key is the writer's; it writes the fallback target.
    /** Every write the executor would run lands at once (the fallback target is written). */
    const written = (now: number, dd: ReturnType<typeof cycle>) => dd.actions.reduce((l, a) => (a.kind === "write" ? applyOutcome(l, a, { kind: "write", result: "written", action: "replaced", tables: ["rtb-1"], ms: 50 }, now, () => 0.5, 1200).local : l), dd.local);
    let d = cycle(AFTER + 100, fallbackHeld, local, []);
    expect(d.actions.map((a) => a.kind)).toEqual(["write"]);
    local = written(AFTER + 100, d);
    // Then only its re-asserts through the first lock-delay (writes pointing at the fallback), then quiet.
    const later: string[] = [];
    for (let t = AFTER + 500; t <= AFTER + 4000; t += 500) {
      d = cycle(t, fallbackHeld, local, []);
      local = written(t, d);
      later.push(...d.actions.map((a) => a.kind));
    }
    expect(later).toEqual(["write", "write", "write"]);
    d = cycle(AFTER + 4500, fallbackHeld, local, []);
    expect(d.actions).toEqual([]);
    // A candidate passes its checks and has a session: the writer releases (no lock-delay).
    d = cycle(AFTER + 5000, fallbackHeld, local, ["i-b"]);
    expect(d.actions.map((a) => a.kind)).toEqual(["release"]);
    // The candidate holds the key: the writer neither acquires nor writes.
    d = cycle(AFTER + 5300, candidateHeld, { ...d.local, held: undefined } as RouteLocal, ["i-b"]);
    expect(d.actions).toEqual([]);
    expect(d.reason).toMatch(/held by i-b/);
  });

  it("a healthy candidate appearing while the key is free resets nothing it needs: the writer never contends against it", () => {
    let local = initialLocal();
    for (let t = 0; t <= 3 * AFTER; t += 1000) {
      const d = cycle(t, free, local, ["i-b"]);
      local = d.local;
      expect(d.actions).toEqual([]);
    }
  });
});
