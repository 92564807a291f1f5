import { describe, expect, it } from "vitest";
import { episodes, type Incident } from "../support/faults/steady-run.js";

const at = (atS: number, kind: Incident["kind"] = "holder-change"): Incident => ({ t: `t+${atS}`, atS, kind, reason: kind });

describe("false-failover episodes", () => {
  it("incidents less than 15 s apart are one failover; a later one starts another", () => {
    const e = episodes([at(100, "session-destroyed-by-peers"), at(101), at(102, "acquired"), at(130, "released")], [], 20);
    expect(e.map((x) => [x.atS, x.incidents.length])).toEqual([
      [100, 3],
      [130, 1],
    ]);
  });

  it("a failover is marked as during a burst from the burst's start to 5 s after its end", () => {
    const e = episodes([at(12), at(60), at(90)], [{ atS: 10 }, { atS: 40 }], 20);
    expect(e.map((x) => x.duringBurst)).toEqual([true, true, false]);
  });

  it("sorts incidents by time first", () => {
    expect(episodes([at(50), at(10)], [], 20).map((x) => x.atS)).toEqual([10, 50]);
  });

  it("no incident, no failover", () => {
    expect(episodes([], [{ atS: 0 }], 20)).toEqual([]);
  });
});
