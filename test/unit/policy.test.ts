import { describe, expect, it } from "vitest";
import { judgePeer, mayContend, nextPolicyChangeAt, shouldHandOver, singleAz, updateHealthHistory, type HealthHistory, type PeerView, type PolicyContext } from "../../agent/policy/index.js";
import { parseHandover } from "../../agent/policy/runtime.js";
import { renderStatusTable, statusRows } from "../../agent/commands/status.js";
import { parseConfig } from "../../agent/config/index.js";

const base = (over: Partial<PolicyContext> = {}): PolicyContext => ({
  myInstanceId: "i-b1",
  myAz: "b",
  preferredAz: "a",
  history: new Map(),
  now: 100_000,
  wallNow: 1_700_000_000_000,
  standbyDelayMs: 10_000,
  failbackAfterMs: 30_000,
  holdDownMs: 60_000,
  ...over,
});

describe("AZ preference (fake clock)", () => {
  it("a node in the preferred AZ, or a route without preference, always contends", () => {
    expect(mayContend(base({ myAz: "a" })).contend).toBe(true);
    expect(mayContend(base({ preferredAz: undefined })).contend).toBe(true);
  });

  it("a node outside the preferred AZ contends when no preferred node is healthy", () => {
    const history = new Map([["i-a1", { az: "a" }]]);
    expect(mayContend(base({ history }))).toEqual({ contend: true, reason: "no healthy node in a" });
  });

  it("stands by while a preferred node is healthy, until the key has been free for standbyDelay", () => {
    const history = new Map([["i-a1", { az: "a", healthySince: 50_000 }]]);
    expect(mayContend(base({ history })).contend).toBe(false);
    expect(mayContend(base({ history, freeSince: 95_000 })).contend).toBe(false);
    expect(mayContend(base({ history, freeSince: 90_000 })).contend).toBe(true);
  });

  it("health history: continuous health keeps its start, any break resets it", () => {
    let h = updateHealthHistory(new Map(), [{ instanceId: "i-a1", az: "a", healthy: true }], 1000);
    h = updateHealthHistory(h, [{ instanceId: "i-a1", az: "a", healthy: true }], 2000);
    expect(h.get("i-a1")?.healthySince).toBe(1000);
    h = updateHealthHistory(h, [{ instanceId: "i-a1", az: "a", healthy: false }], 3000);
    expect(h.get("i-a1")?.healthySince).toBeUndefined();
    h = updateHealthHistory(h, [{ instanceId: "i-a1", az: "a", healthy: true }], 4000);
    expect(h.get("i-a1")?.healthySince).toBe(4000);
    expect(updateHealthHistory(h, [], 5000).has("i-a1")).toBe(false);
  });

  it("health history: a new session is a restart, and polls further apart than the gap limit are a break (what happened between is unknown)", () => {
    const healthy = (session: string) => [{ instanceId: "i-a1", az: "a", healthy: true, session }];
    let h = updateHealthHistory(new Map(), healthy("s1"), 1000, 4000);
    h = updateHealthHistory(h, healthy("s1"), 2000, 4000);
    expect(h.get("i-a1")?.healthySince).toBe(1000);
    // The peer restarted between two polls: healthy in both, but under a new session.
    h = updateHealthHistory(h, healthy("s2"), 3000, 4000);
    expect(h.get("i-a1")?.healthySince).toBe(3000);
    // Polls failed for 6 s (Consul unreachable): a restart may hide in the gap.
    h = updateHealthHistory(h, healthy("s2"), 9000, 4000);
    expect(h.get("i-a1")?.healthySince).toBe(9000);
    h = updateHealthHistory(h, healthy("s2"), 10_000, 4000);
    expect(h.get("i-a1")?.healthySince).toBe(9000);
  });
});

describe("peer health: checks, serfHealth and a live session (issue #14, scenario 4)", () => {
  const required = ["routeleader-i-a1:liveness", "routeleader-i-a1:check:alive"];
  const alive: PeerView = {
    instanceId: "i-a1",
    az: "a",
    checks: { serfHealth: "passing", "routeleader-i-a1:liveness": "passing", "routeleader-i-a1:check:alive": "passing" },
    sessions: [{ id: "s-a1", checks: ["routeleader-i-a1:liveness", "routeleader-i-a1:check:alive"] }],
  };
  /** A powered-off node: its TTL checks still read "passing" (nobody updates them), gossip says failed, its sessions are gone. */
  const dead: PeerView = { ...alive, checks: { ...alive.checks, serfHealth: "critical" }, sessions: [] };

  it("needs every check, serfHealth and a live session bound to the route's checks", () => {
    expect(judgePeer(alive, required)).toEqual({ instanceId: "i-a1", az: "a", healthy: true, session: "s-a1" });
    expect(judgePeer(dead, required)).toMatchObject({ healthy: false, reason: "node serfHealth critical" });
    expect(judgePeer({ ...alive, checks: { ...alive.checks, serfHealth: "passing", "routeleader-i-a1:check:alive": "critical" } }, required)).toMatchObject({ healthy: false, reason: "check routeleader-i-a1:check:alive critical" });
    expect(judgePeer({ ...alive, sessions: [] }, required)).toMatchObject({ healthy: false, reason: "no live session bound to its checks" });
    // A session of another check set (liveness only) does not cover a route that needs 'alive'.
    expect(judgePeer({ ...alive, sessions: [{ id: "s-other", checks: ["routeleader-i-a1:liveness"] }] }, required).healthy).toBe(false);
    // No serfHealth in the answer at all (e.g. a catalog entry without its node check): not healthy.
    const { serfHealth: _, ...withoutSerf } = alive.checks;
    expect(judgePeer({ ...alive, checks: withoutSerf }, required)).toMatchObject({ healthy: false, reason: "node serfHealth missing" });
  });

  it("a standby does not wait standbyDelay for, nor fail back to, a preferred node that died (fake clock)", () => {
    // One health poll per second; the preferred node a1 is healthy for a minute, then powered off at t = 60 s.
    let history: HealthHistory = new Map();
    const poll = (view: PeerView, now: number) => (history = updateHealthHistory(history, [judgePeer(view, required)], now));
    for (let t = 0; t < 60_000; t += 1000) poll(alive, t);
    const at = (now: number, over: Partial<PolicyContext> = {}) => base({ history, now, ...over });
    expect(mayContend(at(59_000, { freeSince: 58_000 })).contend).toBe(false);
    // Consul frees the key at 66 s (gossip + session invalidation); the first poll after the death sees serfHealth critical.
    for (let t = 60_000; t <= 66_000; t += 1000) poll(dead, t);
    expect(mayContend(at(66_000, { freeSince: 66_000 }))).toEqual({ contend: true, reason: "no healthy node in a" });
    // Holding the route, for as long as the dead node stays dead: no failback.
    for (let t = 67_000; t <= 200_000; t += 1000) {
      poll(dead, t);
      expect(shouldHandOver(at(t)).handOver).toBe(false);
    }
    // Back to life (agent restarted, new session): failback only after failbackAfter of continuous health.
    for (let t = 201_000; t < 231_000; t += 1000) {
      poll(alive, t);
      expect(shouldHandOver(at(t)).handOver).toBe(false);
    }
    poll(alive, 231_000);
    expect(shouldHandOver(at(231_000))).toEqual({ handOver: true, reason: "failback" });
  });
});

describe("failback and hold-down", () => {
  const healthyFor = (ms: number, now = 100_000) => new Map([["i-a1", { az: "a", healthySince: now - ms }]]);

  it("hands back only after a preferred node has been healthy for failbackAfter", () => {
    expect(shouldHandOver(base({ history: healthyFor(29_999) })).handOver).toBe(false);
    expect(shouldHandOver(base({ history: healthyFor(30_000) }))).toEqual({ handOver: true, reason: "failback" });
  });

  it("never hands back twice within the hold-down", () => {
    const wallNow = 1_700_000_000_000;
    expect(shouldHandOver(base({ history: healthyFor(40_000), lastFailbackAt: wallNow - 59_000 })).handOver).toBe(false);
    expect(shouldHandOver(base({ history: healthyFor(40_000), lastFailbackAt: wallNow - 60_000 })).handOver).toBe(true);
  });

  it("a holder in the preferred AZ never fails back", () => {
    expect(shouldHandOver(base({ myAz: "a", history: healthyFor(90_000) })).handOver).toBe(false);
  });
});

describe("the policy's next change: the election sleeps until then (issue #16)", () => {
  const wallNow = 1_700_000_000_000;
  /** The same context `ms` later, on both clocks. */
  const later = (ctx: PolicyContext, ms: number): PolicyContext => ({ ...ctx, now: ctx.now + ms, wallNow: ctx.wallNow + ms });
  const verdicts = (ctx: PolicyContext) => JSON.stringify([mayContend(ctx).contend, shouldHandOver(ctx).handOver]);

  it.each<[string, PolicyContext]>([
    ["the standby delay ends", base({ history: new Map([["i-a1", { az: "a", healthySince: 50_000 }]]), freeSince: 95_000 })],
    ["a preferred peer reaches failbackAfter", base({ history: new Map([["i-a1", { az: "a", healthySince: 80_000 }]]) })],
    ["the hold-down after a failback ends", base({ history: new Map([["i-a1", { az: "a", healthySince: 0 }]]), lastFailbackAt: wallNow - 50_000 })],
    ["an operator's handover request expires", base({ myAz: "a", handover: { to: "i-x", until: wallNow + 7000 } })],
  ])("names the moment the verdict flips when %s", (_what, ctx) => {
    const at = nextPolicyChangeAt(ctx) as number;
    expect(at).toBeGreaterThan(ctx.now);
    expect(verdicts(later(ctx, at - ctx.now - 1))).toBe(verdicts(ctx));
    expect(verdicts(later(ctx, at - ctx.now))).not.toBe(verdicts(ctx));
  });

  it("names nothing when only news from Consul can change the verdict", () => {
    expect(nextPolicyChangeAt(base({ history: new Map([["i-a1", { az: "a" }]]) }))).toBeUndefined();
    expect(nextPolicyChangeAt(base({ myAz: "a", history: new Map([["i-b2", { az: "b", healthySince: 0 }]]) }))).toBeUndefined();
  });
});

describe("operator handover requests", () => {
  const wallNow = 1_700_000_000_000;

  it("bind everyone but the target until they expire", () => {
    const handover = { to: "i-x", from: "i-b1", until: wallNow + 10_000 };
    expect(mayContend(base({ myAz: "a", handover })).contend).toBe(false);
    expect(mayContend(base({ myInstanceId: "i-x", handover })).contend).toBe(true);
    expect(shouldHandOver(base({ handover }))).toEqual({ handOver: true, reason: "handover" });
    expect(shouldHandOver(base({ myInstanceId: "i-x", history: new Map([["i-a1", { az: "a", healthySince: 0 }]]), handover })).handOver).toBe(false);
    expect(mayContend(base({ myAz: "a", handover: { ...handover, until: wallNow - 1 } })).contend).toBe(true);
  });

  it("without a target, only the old holder stays back", () => {
    const handover = { from: "i-b1", until: wallNow + 10_000 };
    expect(mayContend(base({ handover })).contend).toBe(false);
    expect(mayContend(base({ myInstanceId: "i-b2", myAz: "a", handover })).contend).toBe(true);
  });

  it("parses requests leniently", () => {
    expect(parseHandover('{"to":"i-1","until":5}')).toEqual({ to: "i-1", until: 5 });
    expect(parseHandover('{"to":"i-1"}')).toBeUndefined();
    expect(parseHandover("garbage")).toBeUndefined();
  });

  it("preferred AZ: one shared AZ, else none", () => {
    expect(singleAz(["a", "a"])).toBe("a");
    expect(singleAz(["a", "b"])).toBeUndefined();
    expect(singleAz([])).toBeUndefined();
  });
});

describe("status rows", () => {
  const config = parseConfig("cluster: c\nroutes:\n  - name: r1\n    table: {main: true}\n    destination: 0.0.0.0/0\n  - name: r2\n    table: {main: true}\n    destination: 10.9.0.0/16\n", "t.yaml");
  const holder = (instanceId: string) => JSON.stringify({ instanceId, az: "a", eni: `eni-${instanceId}`, privateIp: "", session: "s", lockIndex: 1, acquiredAt: "2026-11-21T00:00:00Z", agentVersion: "0" });
  const entry = (route: string, instanceId: string, session?: string) => ({ key: `routeleader/c/routes/${route}`, value: holder(instanceId), lockIndex: 1, modifyIndex: 2, createIndex: 1, flags: 0, ...(session ? { session } : {}) });

  it("flags drift when the table disagrees with the holder, not when the key is free", () => {
    const rows = statusRows(
      config,
      [
        { routeName: "r1", tableId: "rtb-1", destination: "0.0.0.0/0", target: "i-other", state: "active" },
        { routeName: "r2", tableId: "rtb-1", destination: "10.9.0.0/16", target: "i-old", state: "active" },
      ],
      [entry("r1", "i-a", "s1"), entry("r2", "i-old")],
    );
    expect(rows[0]).toMatchObject({ holder: "i-a", drift: true, driftReason: "table points at i-other, holder is i-a" });
    expect(rows[1]).toMatchObject({ holder: null, drift: false });
    expect(renderStatusTable(rows)).toMatch(/r1 .*DRIFT: table points at i-other/);
  });

  it("accepts the holder's ENI as its target, and flags a blackhole", () => {
    const rows = statusRows(config, [{ routeName: "r1", tableId: "rtb-1", destination: "0.0.0.0/0", target: "eni-i-a", state: "active" }, { routeName: "r2", tableId: "rtb-1", destination: "10.9.0.0/16", target: "i-a", state: "blackhole" }], [entry("r1", "i-a", "s1"), entry("r2", "i-a", "s1")]);
    expect(rows.map((r) => r.drift)).toEqual([false, true]);
  });
});
