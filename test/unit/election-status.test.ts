import { describe, expect, it } from "vitest";
import { consulSilence } from "../../agent/election/status.js";

describe("/status of a held route when Consul goes quiet (issue #14)", () => {
  const WATCH_WAIT = 5000;

  it("says nothing while the watch answers within its wait (plus Consul's up-to-1/16 jitter)", () => {
    expect(consulSilence({ now: 10_000, answeredAt: 10_000, watchWaitMs: WATCH_WAIT })).toBeUndefined();
    expect(consulSilence({ now: 16_300, answeredAt: 10_000, watchWaitMs: WATCH_WAIT })).toBeUndefined();
  });

  it("a silent watch past its wait, jitter and 1 s: the node may have lost the key", () => {
    expect(consulSilence({ now: 16_400, answeredAt: 10_000, watchWaitMs: WATCH_WAIT })).toBe("no answer from Consul for 6.4 s: this node may have lost the key");
  });

  it("a failing watch: unconfirmed at once, saying for how long and when Consul last answered", () => {
    expect(consulSilence({ now: 12_000, answeredAt: 10_000, failingSince: 11_500, watchWaitMs: WATCH_WAIT })).toBe("Consul unreachable for 0.5 s (last answer 2.0 s ago): this node may have lost the key");
  });
});
