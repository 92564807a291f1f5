import { describe, expect, it } from "vitest";
import { nextWatchIndex, TokenBucket } from "../../agent/consul/blocking.js";
import { leaseDeadline } from "../../agent/election/lease.js";
import { parseHolder, routeOfKey } from "../../agent/election/holder.js";

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
