import { describe, expect, it } from "vitest";
import type { Clock } from "../../agent/clock.js";
import type { Member } from "../../agent/consul/index.js";
import { GossipRejoin, REJOIN_AFTER_MS, REJOIN_MIN_INTERVAL_MS } from "../../agent/consul/rejoin.js";
import { memoryLogger } from "../support/ec2-world.js";

/** Time that moves only when the test says so. */
function fakeClock(): Clock & { advance(ms: number): void } {
  let t = 0;
  return { now: () => t, wallNow: () => t, sleep: () => Promise.resolve(), advance: (ms) => void (t += ms) };
}

const member = (name: string, addr: string, role: string, status = 1): Member => ({ name, addr, port: 8301, status, tags: { role } });

function consulWith(members: Member[], refuse: Set<string> = new Set()) {
  const joins: string[] = [];
  const api = {
    members: async () => members,
    join: async (address: string) => {
      joins.push(address);
      if (refuse.has(address)) throw new Error(`join ${address}: connection refused`);
    },
  };
  return { api, joins };
}

const flush = () => new Promise((r) => setImmediate(r));
const REFUSAL = "consul PUT /v1/session/create: HTTP 500: Check 'serfHealth' is in critical state";

describe("GossipRejoin: a node Consul holds failed rejoins the gossip through one server", () => {
  it("waits until refusals have gone on for REJOIN_AFTER_MS, then joins one server, at most once per interval", async () => {
    const clock = fakeClock();
    const { api, joins } = consulWith([member("s1", "10.0.0.1", "consul"), member("s2", "10.0.0.2", "consul"), member("c1", "10.0.1.5", "node")]);
    const rejoin = new GossipRejoin({ api, clock, log: memoryLogger().log, random: () => 0 });
    for (let t = 0; t < REJOIN_AFTER_MS; t += 2000) {
      rejoin.request(REFUSAL);
      await flush();
      clock.advance(2000);
    }
    expect(joins).toEqual([]);
    rejoin.request(REFUSAL);
    await flush();
    expect(joins).toHaveLength(1);
    expect(["10.0.0.1:8301", "10.0.0.2:8301"]).toContain(joins[0]);
    clock.advance(REJOIN_MIN_INTERVAL_MS - 1);
    rejoin.request(REFUSAL);
    await flush();
    expect(joins).toHaveLength(1);
    clock.advance(1);
    rejoin.request(REFUSAL);
    await flush();
    expect(joins).toHaveLength(2);
  });

  it("a refusal after a quiet spell starts a new episode: no join until it has lasted REJOIN_AFTER_MS again", async () => {
    const clock = fakeClock();
    const { api, joins } = consulWith([member("s1", "10.0.0.1", "consul")]);
    const rejoin = new GossipRejoin({ api, clock, log: memoryLogger().log });
    rejoin.request(REFUSAL);
    clock.advance(REJOIN_AFTER_MS + 60_000);
    rejoin.request(REFUSAL);
    await flush();
    expect(joins).toEqual([]);
  });

  it("a server that refuses the join is followed by the next; servers that left are not tried", async () => {
    const clock = fakeClock();
    const members = [member("s1", "10.0.0.1", "consul"), member("s2", "10.0.0.2", "consul"), member("s3", "10.0.0.3", "consul", 3)];
    const { api, joins } = consulWith(members, new Set(["10.0.0.1:8301"]));
    const rejoin = new GossipRejoin({ api, clock, log: memoryLogger().log, random: () => 0.99 });
    const result = await rejoin.rejoin(REFUSAL);
    expect(joins).toEqual(["10.0.0.1:8301", "10.0.0.2:8301"]);
    expect(result).toEqual({ joined: "10.0.0.2:8301", failed: ["10.0.0.1:8301"] });
  });
});
