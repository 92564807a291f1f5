import { describe, expect, it } from "vitest";
import { unconfirmedReason } from "../../agent/election/status.js";

describe("/status of a held route when Consul goes quiet (issue #14)", () => {
  const WATCH_WAIT = 5000;

  it("says nothing while the watch answers within its wait (plus Consul's up-to-1/16 jitter)", () => {
    expect(unconfirmedReason({ now: 10_000, answeredAt: 10_000, watchWaitMs: WATCH_WAIT })).toBeUndefined();
    expect(unconfirmedReason({ now: 16_300, answeredAt: 10_000, watchWaitMs: WATCH_WAIT })).toBeUndefined();
  });

  it("a silent watch past its wait, jitter and 1 s: the node may have lost the key", () => {
    expect(unconfirmedReason({ now: 16_400, answeredAt: 10_000, watchWaitMs: WATCH_WAIT })).toBe("no answer from Consul for 6.4 s: this node may have lost the key");
  });

  it("a failing watch: unconfirmed at once, saying for how long and when Consul last answered", () => {
    expect(unconfirmedReason({ now: 12_000, answeredAt: 10_000, failingSince: 11_500, watchWaitMs: WATCH_WAIT })).toBe("Consul unreachable for 0.5 s (last answer 2.0 s ago): this node may have lost the key");
  });

  it("cut off from a majority of its peers: unconfirmed while it lasts, and after it until Consul answers again", () => {
    const cutOff = { since: 10_000, heard: 0, peers: 2 };
    expect(unconfirmedReason({ now: 11_000, answeredAt: 10_500, watchWaitMs: WATCH_WAIT, cutOff })).toBe("hears 0 of 2 peers for 1.0 s: a majority may have taken the key");
    // Heard again at 13 s; the watch last answered at 10.5 s (its request may have hung through the partition).
    const ended = { ...cutOff, until: 13_000 };
    expect(unconfirmedReason({ now: 13_500, answeredAt: 10_500, watchWaitMs: WATCH_WAIT, cutOff: ended })).toBe("was cut off from its peers for 3.0 s; no answer from Consul since: this node may have lost the key");
    expect(unconfirmedReason({ now: 13_500, answeredAt: 13_200, watchWaitMs: WATCH_WAIT, cutOff: ended })).toBeUndefined();
  });
});
