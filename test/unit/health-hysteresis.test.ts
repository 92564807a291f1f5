import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { describeCounters, initialHysteresis, step, type Hysteresis } from "../../agent/health/hysteresis.js";

/** Feeds a run of results, one per "second" of a fake clock, and returns every state. */
function feed(start: Hysteresis, results: readonly boolean[]): Hysteresis[] {
  const states: Hysteresis[] = [];
  let state = start;
  results.forEach((ok, i) => {
    state = step(state, { ok }, 1000 * (i + 1));
    states.push(state);
  });
  return states;
}

describe("rise/fall hysteresis (pure)", () => {
  it("starts not passing: a booting node never contends before it has run", () => {
    const s = initialHysteresis({ rise: 2, fall: 3 });
    expect(s).toEqual({ rise: 2, fall: 3, passing: false, consecutiveOk: 0, consecutiveFail: 0 });
    expect(describeCounters(s)).toBe("not run yet, 0/2 ok");
  });

  it("turns passing only on the rise-th consecutive pass", () => {
    const states = feed(initialHysteresis({ rise: 3, fall: 2 }), [true, true, true]);
    expect(states.map((s) => s.passing)).toEqual([false, false, true]);
    expect(states.map((s) => s.consecutiveOk)).toEqual([1, 2, 3]);
    expect(states[2]?.lastRunAt).toBe(3000);
    expect(describeCounters(states[1]!)).toBe("rising, 2/3 ok");
    expect(describeCounters(states[2]!)).toBe("3/3 ok");
  });

  it("a failure during rise restarts the count", () => {
    const states = feed(initialHysteresis({ rise: 2, fall: 2 }), [true, false, true, true]);
    expect(states.map((s) => s.passing)).toEqual([false, false, false, true]);
    expect(states[1]).toMatchObject({ consecutiveOk: 0, consecutiveFail: 1 });
  });

  it("stays passing through fewer than fall failures, fails on the fall-th", () => {
    const passing = feed(initialHysteresis({ rise: 1, fall: 3 }), [true]).at(-1)!;
    const states = feed(passing, [false, false, true, false, false, false]);
    expect(states.map((s) => s.passing)).toEqual([true, true, true, true, true, false]);
    expect(describeCounters(states[1]!)).toBe("passing, 2/3 failed");
    expect(describeCounters(states[5]!)).toBe("failing, 3/3 failed");
  });

  it("rise 1 / fall 1 follows every result", () => {
    const states = feed(initialHysteresis({ rise: 1, fall: 1 }), [true, false, true, false]);
    expect(states.map((s) => s.passing)).toEqual([true, false, true, false]);
  });

  it("does not mutate the state it is given", () => {
    const s = Object.freeze(initialHysteresis({ rise: 1, fall: 1 }));
    expect(() => step(s, { ok: true }, 1)).not.toThrow();
    expect(s.passing).toBe(false);
  });

  it("property: the verdict flips only after rise passes / fall failures in a row", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.array(fc.boolean(), { maxLength: 60 }), (rise, fall, results) => {
        const states = feed(initialHysteresis({ rise, fall }), results);
        let previous = false;
        states.forEach((s, i) => {
          if (!previous && s.passing) expect(results.slice(i + 1 - rise, i + 1)).toEqual(Array(rise).fill(true));
          if (previous && !s.passing) expect(results.slice(i + 1 - fall, i + 1)).toEqual(Array(fall).fill(false));
          if (i + 1 < rise && s.passing) throw new Error("passing before rise results");
          previous = s.passing;
        });
      }),
    );
  });
});
