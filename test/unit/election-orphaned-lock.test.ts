import { describe, expect, it } from "vitest";
import { initialState, step, type ElectionInput, type RouteState } from "../../agent/election/machine.js";

/**
 * Found by the load benchmark (5 agents × 200 routes): a node outside a route's preferred AZ
 * sent an acquire at cold start, became ineligible (standby: a preferred-AZ node turned
 * healthy) while the acquire was in flight, and the acquire succeeded. The machine dropped
 * the result, so the key stayed held by the node's session, renewed forever: the node never
 * wrote the route (the table entry stayed absent for minutes) nor released it, and the
 * preferred node could not acquire it. A node holding a key it does not want must release it.
 */

const timing = { lockDelayMs: 3000, random: () => 0.5 };

function run(inputs: [number, ElectionInput][], start: RouteState = initialState("r1")) {
  let state = start;
  const commands = [];
  for (const [now, input] of inputs) {
    const out = step(state, input, now, timing);
    state = out.state;
    commands.push(...out.commands);
  }
  return { state, commands };
}

describe("an acquire that succeeds after the node stopped wanting the route", () => {
  it("is released, not left holding the key under a live session", () => {
    const { state, commands } = run([
      [0, { type: "observed", entry: { lockIndex: 0, modifyIndex: 5 } }],
      [1, { type: "eligibility", eligible: true, session: "s1" }],
      [2, { type: "eligibility", eligible: false, session: "s1" }],
      [3, { type: "acquireResult", outcome: "acquired", lockIndex: 1 }],
      [4, { type: "observed", entry: { session: "s1", lockIndex: 1, modifyIndex: 11 } }],
    ]);
    expect(commands.filter((c) => c.type === "acquire")).toHaveLength(1);
    const releases = commands.filter((c) => c.type === "release");
    expect(releases, `state ${JSON.stringify(state)}`).toEqual([expect.objectContaining({ route: "r1", session: "s1" })]);
  });

  it("the same when the node learns of it only from the watch (acquire answer lost)", () => {
    const { state, commands } = run([
      [0, { type: "observed", entry: { lockIndex: 0, modifyIndex: 5 } }],
      [1, { type: "eligibility", eligible: true, session: "s1" }],
      [2, { type: "acquireResult", outcome: "unknown" }],
      [3, { type: "eligibility", eligible: false, session: "s1" }],
      [4, { type: "observed", entry: { session: "s1", lockIndex: 1, modifyIndex: 11 } }],
    ]);
    expect(commands.filter((c) => c.type === "release"), `state ${JSON.stringify(state)}`).toEqual([expect.objectContaining({ route: "r1", session: "s1" })]);
  });
});
