import { describe, expect, it } from "vitest";
import { decide, initialLocal, nextDue, reassertSchedule, type Action, type KeyView, type RouteLocal, type RouteView } from "../../agent/election/decide.js";
import { applyOutcome, BLOCK_FIRST_MS, LOCK_DELAY_END_MARGIN_MS, FATAL_WRITE_LIMIT, WRITE_RETRY_FIRST_MS, type Outcome } from "../../agent/election/results.js";

/**
 * decide() as a table: a view of the whole current state and the route's local facts in,
 * actions and the reason out. Time is a number; nothing sleeps.
 */

const LOCK_DELAY = 3000;
const free: KeyView = { lockIndex: 1, modifyIndex: 20 };
const mine = (lockIndex = 2, modifyIndex = 30): KeyView => ({ session: "s1", lockIndex, modifyIndex });
const theirs: KeyView = { session: "s9", lockIndex: 2, modifyIndex: 30, holder: { instanceId: "i-peer", az: "b", eni: "", privateIp: "", session: "s9", lockIndex: 2, acquiredAt: "", agentVersion: "" } };

function view(over: Partial<RouteView> = {}): RouteView {
  return { route: "r1", now: 1000, key: free, snapshotIndex: 100, session: "s1", leaseOk: true, healthy: true, mayContend: true, reconcileDue: false, ...over };
}

const holding = (over: Partial<RouteLocal> = {}): RouteLocal => ({ ...initialLocal(), seenSession: "s1", held: { session: "s1", lockIndex: 2, modifyIndex: 30, acquiredAt: 0 }, ...over });
const kinds = (actions: readonly Action[]) => actions.map((a) => a.kind);

describe("decide: contention", () => {
  const cases: [string, Partial<RouteView>, Partial<RouteLocal>, string[], RegExp][] = [
    ["no snapshot yet: nothing", { key: undefined }, {}, [], /first read/],
    ["free key, eligible, session: acquire", {}, {}, ["acquire"], /acquiring \(attempt 1\)/],
    ["absent key: acquire", { key: null }, {}, ["acquire"], /acquiring/],
    ["free but no session: wait", { session: undefined }, {}, [], /no session/],
    ["free but checks failing: wait", { healthy: false }, {}, [], /checkFailed/],
    ["free but draining: wait", { draining: "drain" }, {}, [], /drain/],
    ["free but the policy says standby: wait", { mayContend: false }, {}, [], /policy/],
    ["free, but given up for refused writes: wait", {}, { blocked: { reason: "3 refused", until: 5000, count: 1 } }, [], /writeRefused/],
    ["free, given-up period over: acquire", { now: 6000 }, { blocked: { reason: "3 refused", until: 5000, count: 1 } }, ["acquire"], /acquiring/],
    ["free, lock-delay retry pending: wait", {}, { retryAt: 1200 }, [], /retry pending/],
    ["held by a peer: nothing", { key: theirs }, {}, [], /held by i-peer/],
    ["acquire in flight: nothing more", { inFlight: "acquire" }, {}, [], /in flight/],
  ];
  it.each(cases)("%s", (_name, v, l, expected, reason) => {
    const d = decide(view(v), { ...initialLocal(), ...l }, LOCK_DELAY);
    expect(kinds(d.actions)).toEqual(expected);
    expect(d.reason).toMatch(reason);
  });

  it("the acquire names the session, the attempt and the LockIndex a new holder gets", () => {
    const d = decide(view(), { ...initialLocal(), acquireAttempt: 4 }, LOCK_DELAY);
    expect(d.actions).toEqual([{ kind: "acquire", route: "r1", session: "s1", attempt: 5, expectedLockIndex: 2 }]);
  });
});

describe("decide: the key is mine", () => {
  it("lost acquire answer: the snapshot shows my session → adopt it, write at once, re-assert through the lock-delay", () => {
    const d = decide(view({ key: mine() }), { ...initialLocal(), freeSince: 400 }, LOCK_DELAY);
    expect(d.events.find((e) => e.type === "acquired")).toMatchObject({ lockIndex: 2, waitedMs: 600 });
    expect(d.actions).toEqual([{ kind: "write", route: "r1", session: "s1", lockIndex: 2, why: "acquired", force: false }]);
    expect(d.local.reassertAt).toEqual(reassertSchedule(1000, LOCK_DELAY));
    expect(Math.max(...d.local.reassertAt)).toBeLessThanOrEqual(1000 + LOCK_DELAY);
  });

  it("a hold taken over from another instance: its first write names that instance (the writer may write before reading), even when it comes a cycle after the acquire; re-asserts do not", () => {
    const seen = decide(view({ key: theirs, now: 500 }), initialLocal(), LOCK_DELAY).local;
    const freed = decide(view({ key: { lockIndex: 2, modifyIndex: 40, holder: theirs.holder! }, now: 800 }), seen, LOCK_DELAY).local;
    const acquired = decide(view({ key: mine(3, 50), now: 1000 }), freed, LOCK_DELAY);
    expect(acquired.actions).toEqual([expect.objectContaining({ kind: "write", why: "acquired", takeoverFrom: "i-peer" })]);
    const reassert = decide(view({ key: mine(3, 50), now: 1000 + LOCK_DELAY }), acquired.local, LOCK_DELAY);
    expect(reassert.actions).toEqual([expect.not.objectContaining({ takeoverFrom: expect.anything() })]);
    // The snapshot shows the key ours while the acquire is still in flight: the write comes a cycle later, still a takeover.
    const early = decide(view({ key: mine(3, 50), now: 1000, inFlight: "acquire" }), freed, LOCK_DELAY);
    expect(early.actions).toEqual([]);
    const later = decide(view({ key: mine(3, 50), now: 1040 }), early.local, LOCK_DELAY);
    expect(later.actions).toEqual([expect.objectContaining({ kind: "write", why: "retry", takeoverFrom: "i-peer" })]);
  });

  it("mine but not wanted (check failed, drain, handover, given up, an old session) → release, every cycle until Consul confirms", () => {
    const reasons: [Partial<RouteView>, Partial<RouteLocal>, string][] = [
      [{ healthy: false }, {}, "checkFailed"],
      [{ draining: "shutdown" }, {}, "shutdown"],
      [{ handOver: "failback" }, {}, "failback"],
      [{}, { blocked: { reason: "x", until: 9999, count: 1 } }, "writeRefused"],
      [{ session: "s2" }, {}, "ineligible"],
    ];
    for (const [v, l, reason] of reasons) {
      const d = decide(view({ key: mine(), ...v }), holding(l), LOCK_DELAY);
      expect(d.actions, reason).toEqual([expect.objectContaining({ kind: "release", session: "s1", lockIndex: 2, reason })]);
    }
  });

  it("an acquire won after the node stopped wanting the route is released, not kept (load benchmark finding)", () => {
    const d = decide(view({ key: mine(), mayContend: true, healthy: false }), initialLocal(), LOCK_DELAY);
    expect(d.actions).toEqual([expect.objectContaining({ kind: "release", reason: "checkFailed" })]);
  });

  it("a failed release is retried after its back-off, as long as the key shows my session", () => {
    const action = decide(view({ key: mine(), draining: "drain" }), holding(), LOCK_DELAY).actions[0] as Action;
    const failed = applyOutcome(holding(), action, { kind: "release", result: "unknown", detail: "socket hang up" }, 1000, () => 0.5, 1200);
    expect(failed.events).toEqual([]);
    expect(kinds(decide(view({ key: mine(), draining: "drain", now: 1100 }), failed.local, LOCK_DELAY).actions)).toEqual([]);
    expect(kinds(decide(view({ key: mine(), draining: "drain", now: 1300 }), failed.local, LOCK_DELAY).actions)).toEqual(["release"]);
    const done = applyOutcome(failed.local, action, { kind: "release", result: "released" }, 1400, () => 0.5, 1200);
    expect(done.events).toEqual([expect.objectContaining({ type: "released", reason: "drain" })]);
    expect(done.local.held).toBeUndefined();
  });

  it("a write in flight while the route turns unwanted is cancelled, then released", () => {
    const d = decide(view({ key: mine(), healthy: false, inFlight: "write" }), holding(), LOCK_DELAY);
    expect(d.cancelWrite).toBe(true);
    expect(d.actions).toEqual([]);
  });

  it("no write past the lease deadline", () => {
    const d = decide(view({ key: mine(), leaseOk: false }), holding({ writeDueAt: 0 }), LOCK_DELAY);
    expect(d.actions).toEqual([]);
    expect(d.reason).toMatch(/lease deadline/);
  });

  it("re-asserts are forced writes; the reconcile tick writes without force", () => {
    const reassert = decide(view({ key: mine() }), holding({ reassertAt: [900, 2000] }), LOCK_DELAY);
    expect(reassert.actions).toEqual([expect.objectContaining({ kind: "write", why: "reassert", force: true })]);
    expect(reassert.local.reassertAt).toEqual([2000]);
    const tick = decide(view({ key: mine(), reconcileDue: true }), holding(), LOCK_DELAY);
    expect(tick.actions).toEqual([expect.objectContaining({ kind: "write", why: "reconcile", force: false })]);
    expect(decide(view({ key: mine() }), holding(), LOCK_DELAY).actions).toEqual([]);
  });

  it("Consul's answer to my acquire is trusted over a snapshot read before it landed", () => {
    const acquire = { kind: "acquire", route: "r1", session: "s1", attempt: 1, expectedLockIndex: 2 } as const;
    const answered = applyOutcome(initialLocal(), acquire, { kind: "acquire", result: "acquired", lockIndex: 2, modifyIndex: 150 }, 1000, () => 0.5, 1200).local;
    const early = decide(view({ key: free, snapshotIndex: 120 }), answered, LOCK_DELAY);
    expect(early.events.map((e) => e.type)).toEqual(expect.arrayContaining(["acquired"]));
    expect(early.events.filter((e) => e.type === "lost")).toEqual([]);
    expect(kinds(early.actions)).toEqual(["write"]);
    const later = decide(view({ key: free, snapshotIndex: 160 }), early.local, LOCK_DELAY);
    expect(later.events.find((e) => e.type === "lost")).toMatchObject({ reason: "sessionInvalidated" });
  });
});

describe("decide: after my own release", () => {
  it("a snapshot read before the release landed does not make the key mine again (no false 'acquired'; soak finding)", () => {
    const release = { kind: "release", route: "r1", session: "s1", lockIndex: 2, acquiredAt: 0, reason: "failback" } as const;
    const done = applyOutcome(holding(), release, { kind: "release", result: "released", answer: { lockIndex: 2, modifyIndex: 140 } }, 1000, () => 0.5, 1200);
    // The watch still shows the key under my session (index 120 < 140): nothing is adopted.
    const stale = decide(view({ key: mine(2, 100), snapshotIndex: 120 }), done.local, LOCK_DELAY);
    expect(stale.events.filter((e) => e.type === "acquired")).toEqual([]);
    expect(kinds(stale.actions)).toEqual(["acquire"]);
    // A peer took it meanwhile: the fresh snapshot shows that, and nothing is adopted either.
    const fresh = decide(view({ key: theirs, snapshotIndex: 150 }), stale.local, LOCK_DELAY);
    expect(fresh.events.filter((e) => e.type === "acquired")).toEqual([]);
  });
});

describe("decide: one 'released' per release", () => {
  it("a confirmed release whose read-back failed: a stale snapshot still showing my session and LockIndex is not released again (metrics scrape finding)", () => {
    const release = { kind: "release", route: "r1", session: "s1", lockIndex: 2, acquiredAt: 0, reason: "checkFailed" } as const;
    // Consul confirmed the release; the read of the key after it failed (no answer to go by).
    const done = applyOutcome(holding(), release, { kind: "release", result: "released" }, 1000, () => 0.5, 1200);
    expect(done.events.filter((e) => e.type === "released")).toHaveLength(1);
    // The watch's next answer was read before the release landed: the key still under s1, LockIndex 2.
    const stale = decide(view({ now: 1100, key: mine(2, 30), snapshotIndex: 100, healthy: false }), done.local, LOCK_DELAY);
    expect(kinds(stale.actions)).toEqual([]);
    expect(stale.events.filter((e) => e.type === "acquired" || e.type === "released")).toEqual([]);
    // Then the fresh snapshot: free. Still nothing to release, no event.
    const fresh = decide(view({ now: 1200, key: { lockIndex: 2, modifyIndex: 140 }, snapshotIndex: 140, healthy: false }), stale.local, LOCK_DELAY);
    expect(kinds(fresh.actions)).toEqual([]);
    // A new acquire by the same session (LockIndex 3) is mine again.
    const again = decide(view({ now: 1300, key: mine(3, 150), snapshotIndex: 150 }), fresh.local, LOCK_DELAY);
    expect(again.events.filter((e) => e.type === "acquired")).toHaveLength(1);
  });
});

describe("decide: the key is not mine any more", () => {
  const cases: [string, KeyView | null, string][] = [
    ["another session took it", theirs, "keyTaken"],
    ["no session on it (session invalidated)", free, "sessionInvalidated"],
    ["the key was deleted", null, "keyDeleted"],
  ];
  it.each(cases)("%s → lost, writes stop at once", (_name, key, reason) => {
    const d = decide(view({ key, snapshotIndex: 200, inFlight: "write" }), holding(), LOCK_DELAY);
    expect(d.events.find((e) => e.type === "lost")).toMatchObject({ reason });
    expect(d.local.held).toBeUndefined();
    expect(d.cancelWrite).toBe(true);
  });

  it("the acquired event names the previous holder, also when it released the key (its JSON stays)", () => {
    const releasedByPeer: KeyView = { lockIndex: 2, modifyIndex: 40, holder: theirs.holder! };
    const seen = decide(view({ key: releasedByPeer, inFlight: "acquire" }), initialLocal(), LOCK_DELAY);
    const adopted = decide(view({ key: mine(3, 50) }), seen.local, LOCK_DELAY);
    expect(adopted.events.find((e) => e.type === "acquired")).toMatchObject({ previousHolder: "i-peer" });
  });

  it("reports a change of holder once per change", () => {
    let local = initialLocal();
    const seen: string[] = [];
    for (const key of [theirs, theirs, mine(), free]) {
      const d = decide(view({ key, inFlight: "acquire" }), local, LOCK_DELAY);
      local = d.local;
      seen.push(...d.events.filter((e) => e.type === "leaderChanged").map((e) => e.type));
    }
    expect(seen).toHaveLength(3);
  });
});

describe("outcomes folded into the route's facts", () => {
  const write = { kind: "write", route: "r1", session: "s1", lockIndex: 2, why: "acquired", force: false } as const;
  const fold = (local: RouteLocal, outcome: Outcome, now = 1000) => applyOutcome(local, write, outcome, now, () => 1, 1200);

  it("a transient write failure is retried within a second, then backs off", () => {
    const first = fold(holding(), { kind: "write", result: "transient", detail: "500" });
    expect(first.local.writeDueAt).toBeLessThanOrEqual(1000 + WRITE_RETRY_FIRST_MS);
    const second = fold(first.local, { kind: "write", result: "transient", detail: "500" }, 2000);
    expect((second.local.writeDueAt as number) - 2000).toBeGreaterThan(WRITE_RETRY_FIRST_MS);
    expect(fold(second.local, { kind: "write", result: "written", action: "replaced", tables: ["rtb-1:replaced"], ms: 5 }).local.writeFailures).toBe(0);
  });

  it(`a write refused for good ${FATAL_WRITE_LIMIT} times gives the route up for a back-off, then decide releases it`, () => {
    let local = holding();
    for (let i = 0; i < FATAL_WRITE_LIMIT; i++) local = fold(local, { kind: "write", result: "fatal", detail: "UnauthorizedOperation" }, 1000 + i).local;
    expect(local.blocked).toMatchObject({ until: 1000 + FATAL_WRITE_LIMIT - 1 + BLOCK_FIRST_MS, count: 1 });
    const d = decide(view({ key: mine(), now: 1100 }), local, LOCK_DELAY);
    expect(d.actions).toEqual([expect.objectContaining({ kind: "release", reason: "writeRefused" })]);
  });

  it("an acquire whose answer is unknown waits for the next read, and that read decides", () => {
    const acquire = { kind: "acquire", route: "r1", session: "s1", attempt: 1, expectedLockIndex: 2 } as const;
    const unknown = applyOutcome(initialLocal(), acquire, { kind: "acquire", result: "unknown", detail: "timeout" }, 1000, () => 0.5, 1200);
    expect(unknown.local.held).toBeUndefined();
    expect(kinds(decide(view({ now: 1500 }), unknown.local, LOCK_DELAY).actions)).toEqual([]);
    expect(kinds(decide(view({ now: 1500, key: mine() }), unknown.local, LOCK_DELAY).actions)).toEqual(["write"]);
  });

  it("an acquire refused for lock-delay is tried again when the lock-delay ends, counted from when the key was seen free", () => {
    const acquire = { kind: "acquire", route: "r1", session: "s1", attempt: 1, expectedLockIndex: 2 } as const;
    const refused = { kind: "acquire", result: "lockDelay" } as const;
    // Seen free at 1000, refused at 2100 with a 1200 ms lock-delay: the end (2200) comes before any jittered retry.
    const nearEnd = applyOutcome({ ...initialLocal(), freeSince: 1000 }, acquire, refused, 2100, () => 0.5, 1200);
    expect(nearEnd.local.retryAt).toBe(1000 + 1200 + LOCK_DELAY_END_MARGIN_MS);
    expect(nextDue(nearEnd.local)).toBe(2210);
    // Refused early in the lock-delay: the jittered window (100–200 ms) comes first.
    expect(applyOutcome({ ...initialLocal(), freeSince: 1000 }, acquire, refused, 1010, () => 0.5, 1200).local.retryAt).toBe(1160);
    // Refused after that end (the old session's lock-delay is longer): jittered retries go on.
    expect(applyOutcome({ ...initialLocal(), freeSince: 1000 }, acquire, refused, 2300, () => 0, 1200).local.retryAt).toBe(2400);
    // Never seen free (refused on a stale read): jittered.
    expect(applyOutcome(initialLocal(), acquire, refused, 2100, () => 1, 1200).local.retryAt).toBe(2300);
  });

  it("nextDue is the earliest timer of the route", () => {
    expect(nextDue(holding({ reassertAt: [3000], writeDueAt: 2000 }))).toBe(2000);
    expect(nextDue(initialLocal())).toBeUndefined();
  });
});
