import { describe, expect, it } from "vitest";
import { initialState, nextWake, reassertSchedule, step, LOCK_DELAY_RETRY_MAX_MS, LOCK_DELAY_RETRY_MIN_MS, UNKNOWN_RETRY_MS, type ElectionInput, type RouteState } from "../../agent/election/machine.js";
import { leaseDeadline, nextWatchIndex, TokenBucket } from "../../agent/election/lease.js";
import { parseHolder, routeOfKey } from "../../agent/election/holder.js";

const timing = (r = 0.5) => ({ lockDelayMs: 3000, random: () => r });

/** Feeds inputs at given times; returns the final state and every command in order. */
function run(inputs: [number, ElectionInput][], start: RouteState = initialState("r1"), r = 0.5) {
  let state = start;
  const commands = [];
  for (const [now, input] of inputs) {
    const out = step(state, input, now, timing(r));
    state = out.state;
    commands.push(...out.commands.map((c) => ({ now, ...c })));
  }
  return { state, commands };
}

const free = { lockIndex: 0, modifyIndex: 5 };
const heldBy = (session: string, lockIndex = 1) => ({ session, lockIndex, modifyIndex: 10 + lockIndex });

describe("election state machine (fake clock)", () => {
  it("does not contend before it is eligible, then acquires a free key", () => {
    const before = run([[0, { type: "observed", entry: free }]]);
    expect(before.commands.filter((c) => c.type === "acquire")).toEqual([]);
    const after = run([[100, { type: "eligibility", eligible: true, session: "s1" }]], before.state);
    expect(after.commands).toEqual([{ now: 100, type: "acquire", route: "r1", session: "s1" }]);
    expect(after.state).toMatchObject({ phase: "contending", acquireInFlight: true });
  });

  it("an eligible node without a session does not contend", () => {
    const { commands, state } = run([
      [0, { type: "observed", entry: null }],
      [1, { type: "eligibility", eligible: true }],
    ]);
    expect(commands.some((c) => c.type === "acquire")).toBe(false);
    expect(state.phase).toBe("idle");
  });

  it("acquired → holding, writes the route, emits acquired with the time the key was free", () => {
    const { state, commands } = run([
      [1000, { type: "observed", entry: heldBy("other") }],
      [1500, { type: "eligibility", eligible: true, session: "s1" }],
      [2000, { type: "observed", entry: { lockIndex: 1, modifyIndex: 20 } }],
      [2040, { type: "acquireResult", outcome: "acquired", lockIndex: 2 }],
    ]);
    expect(state.phase).toBe("holding");
    expect(state.held).toEqual({ session: "s1", lockIndex: 2, acquiredAt: 2040 });
    expect(commands.find((c) => c.type === "emit" && c.event.type === "acquired")).toMatchObject({ event: { waitedMs: 40, lockIndex: 2 } });
    expect(commands.at(-1)).toMatchObject({ type: "writeRoute", why: "acquired" });
    expect(state.reassertAt).toEqual(reassertSchedule(2040, 3000));
  });

  it("lock-delay: retries after 250-500 ms with jitter, only on tick, not before", () => {
    const contending = run([
      [0, { type: "observed", entry: free }],
      [0, { type: "eligibility", eligible: true, session: "s1" }],
      [10, { type: "acquireResult", outcome: "lockDelay" }],
    ], undefined, 0);
    expect(contending.state.retryAt).toBe(10 + LOCK_DELAY_RETRY_MIN_MS);
    expect(nextWake(contending.state, 11)).toBe(10 + LOCK_DELAY_RETRY_MIN_MS);
    expect(nextWake(contending.state, 400)).toBe(400);
    const early = step(contending.state, { type: "tick" }, 200, timing());
    expect(early.commands).toEqual([]);
    const due = step(contending.state, { type: "tick" }, 260, timing());
    expect(due.commands).toEqual([{ type: "acquire", route: "r1", session: "s1" }]);
    const maxJitter = run([[0, { type: "observed", entry: free }], [0, { type: "eligibility", eligible: true, session: "s1" }], [0, { type: "acquireResult", outcome: "lockDelay" }]], undefined, 0.999);
    expect(maxJitter.state.retryAt).toBeLessThan(LOCK_DELAY_RETRY_MAX_MS);
    expect(maxJitter.state.retryAt).toBeGreaterThanOrEqual(LOCK_DELAY_RETRY_MAX_MS - 2);
  });

  it("held by another: waits for the watch, no timed retry", () => {
    const { state } = run([
      [0, { type: "observed", entry: free }],
      [0, { type: "eligibility", eligible: true, session: "s1" }],
      [5, { type: "acquireResult", outcome: "heldByOther" }],
      [6, { type: "observed", entry: heldBy("s2") }],
    ]);
    expect(nextWake(state, 10)).toBeUndefined();
    const freed = step(state, { type: "observed", entry: { lockIndex: 1, modifyIndex: 30 } }, 5000, timing());
    expect(freed.commands.filter((c) => c.type === "acquire")).toHaveLength(1);
  });

  it("unknown outcome backs off a full second", () => {
    const { state } = run([
      [0, { type: "observed", entry: free }],
      [0, { type: "eligibility", eligible: true, session: "s1" }],
      [7, { type: "acquireResult", outcome: "unknown" }],
    ]);
    expect(state.retryAt).toBe(7 + UNKNOWN_RETRY_MS);
  });

  it("adopts the key when an acquire whose answer was lost did succeed", () => {
    const { state, commands } = run([
      [0, { type: "observed", entry: free }],
      [0, { type: "eligibility", eligible: true, session: "s1" }],
      [7, { type: "acquireResult", outcome: "unknown" }],
      [9, { type: "observed", entry: heldBy("s1", 4) }],
    ]);
    expect(state).toMatchObject({ phase: "holding", held: { session: "s1", lockIndex: 4 } });
    expect(commands.some((c) => c.type === "writeRoute")).toBe(true);
  });

  const holding = () =>
    run([
      [0, { type: "observed", entry: free }],
      [0, { type: "eligibility", eligible: true, session: "s1" }],
      [1, { type: "acquireResult", outcome: "acquired", lockIndex: 1 }],
      [2, { type: "observed", entry: heldBy("s1", 1) }],
    ]).state;

  it.each([
    ["the session cleared (invalidated)", { lockIndex: 1, modifyIndex: 40 }, "sessionInvalidated"],
    ["another session holds it", heldBy("s9", 2), "keyTaken"],
    ["the LockIndex changed under the same session id", heldBy("s1", 7), "keyTaken"],
    ["the key was deleted", null, "keyDeleted"],
  ] as const)("holding: %s → lost (%s), no more writes", (_, entry, reason) => {
    const out = step(holding(), { type: "observed", entry }, 100, timing());
    expect(out.commands).toContainEqual({ type: "emit", event: expect.objectContaining({ type: "lost", reason }) });
    expect(out.state.phase).not.toBe("holding");
    expect(out.state.held).toBeUndefined();
    expect(out.state.reassertAt).toEqual([]);
    expect(step(out.state, { type: "tick" }, 10_000, timing()).commands.filter((c) => c.type === "writeRoute")).toEqual([]);
  });

  it("a session invalidated while holding forgets the session (no acquire with a dead one)", () => {
    const out = step(holding(), { type: "sessionLost", session: "s1" }, 50, timing());
    expect(out.state.session).toBeUndefined();
    expect(out.state.phase).toBe("idle");
  });

  it("re-asserts at the scheduled times during the first lock-delay window", () => {
    let state = holding();
    const writes: number[] = [];
    for (let t = 0; t <= 4000; t += 100) {
      const out = step(state, { type: "tick" }, t, timing());
      state = out.state;
      if (out.commands.some((c) => c.type === "writeRoute")) writes.push(t);
    }
    expect(writes).toEqual([1100, 2100, 3300]);
  });

  it("release: ?release command with the reason, then idle and a released event", () => {
    const requested = step(holding(), { type: "releaseRequested", reason: "checkFailed" }, 500, timing());
    expect(requested.commands).toEqual([{ type: "release", route: "r1", session: "s1", reason: "checkFailed" }]);
    expect(requested.state).toMatchObject({ phase: "releasing", eligible: false });
    const done = step(requested.state, { type: "releaseDone" }, 520, timing());
    expect(done.state.phase).toBe("idle");
    expect(done.commands).toEqual([{ type: "emit", event: expect.objectContaining({ type: "released", reason: "checkFailed", heldMs: 519 }) }]);
    // Not eligible after a release until the runner says so again.
    expect(step(done.state, { type: "observed", entry: { lockIndex: 1, modifyIndex: 99 } }, 600, timing()).commands.filter((c) => c.type === "acquire")).toEqual([]);
  });

  it("reports a change of holder once per change", () => {
    const { commands } = run([
      [0, { type: "observed", entry: heldBy("a") }],
      [1, { type: "observed", entry: heldBy("a") }],
      [2, { type: "observed", entry: heldBy("b", 2) }],
    ]);
    expect(commands.filter((c) => c.type === "emit" && c.event.type === "leaderChanged")).toHaveLength(2);
  });
});

describe("lease deadline, watch index and rate limit", () => {
  it("is the earlier of renew + session TTL and liveness + check TTL, less the margin", () => {
    expect(leaseDeadline({ lastRenewAt: 1000, sessionTtlMs: 10_000, lastLivenessPassAt: 9000, livenessTtlMs: 3000, marginMs: 500 })).toBe(10_500);
    expect(leaseDeadline({ lastRenewAt: 1000, sessionTtlMs: 10_000, lastLivenessPassAt: 20_000, livenessTtlMs: 3000, marginMs: 500 })).toBe(10_500);
    expect(leaseDeadline({ lastRenewAt: 5000, sessionTtlMs: 10_000, lastLivenessPassAt: 4000, livenessTtlMs: 3000, marginMs: 500 })).toBe(6500);
  });

  it("resets an index that goes backwards and never sends back 0", () => {
    expect(nextWatchIndex(0, 0)).toBe(1);
    expect(nextWatchIndex(10, 15)).toBe(15);
    expect(nextWatchIndex(15, 9)).toBe(0);
  });

  it("token bucket: bursts, then spaces requests", () => {
    const bucket = new TokenBucket(2, 10, 0);
    expect(bucket.take(0)).toBe(0);
    expect(bucket.take(0)).toBe(0);
    expect(bucket.take(0)).toBe(100);
    expect(bucket.take(1000)).toBe(0);
  });
});

describe("holder values", () => {
  it("parses leniently and maps keys to routes", () => {
    expect(parseHolder("{not json")).toBeUndefined();
    expect(parseHolder('{"instanceId": 5}')).toBeUndefined();
    expect(parseHolder('{"instanceId":"i-1","lockIndex":"x","az":"a"}')).toMatchObject({ instanceId: "i-1", lockIndex: 0, az: "a" });
    expect(routeOfKey("c", "routeleader/c/routes/default-v4")).toBe("default-v4");
    expect(routeOfKey("c", "routeleader/c/routes/a/b")).toBeUndefined();
    expect(routeOfKey("c", "routeleader/d/routes/a")).toBeUndefined();
  });
});
