import { describe, expect, it } from "vitest";
import { firstValue, parseExposition } from "../support/prometheus-text.js";
import { createMetrics } from "../../agent/observe/metrics.js";

/** Reads one sample from the exposition text, as a scraper would: the first line whose labels include `labels`. */
async function value(metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return firstValue(parseExposition((await metrics.render()).body), name, labels);
}

describe("metrics (own prom-client registry)", () => {
  it("tracks leadership, transitions with their reasons and the failover time from election events", async () => {
    const metrics = createMetrics({ routes: ["default-v4", "default-v6"] });
    expect(await value(metrics, "routeleader_route_leader", { route: "default-v6" })).toBe(0);

    metrics.listener({ type: "acquired", route: "default-v4", lockIndex: 3, waitedMs: 1800, at: 0 });
    expect(await value(metrics, "routeleader_route_leader", { route: "default-v4" })).toBe(1);
    expect(await value(metrics, "routeleader_failover_seconds_bucket", { le: "1" })).toBe(0);
    expect(await value(metrics, "routeleader_failover_seconds_bucket", { le: "2" })).toBe(1);
    expect(await value(metrics, "routeleader_failover_seconds_sum")).toBeCloseTo(1.8);

    metrics.listener({ type: "lost", route: "default-v4", reason: "sessionInvalidated", at: 1 });
    metrics.listener({ type: "acquired", route: "default-v4", lockIndex: 5, waitedMs: 200, at: 2 });
    metrics.listener({ type: "released", route: "default-v4", reason: "checkFailed", heldMs: 10, at: 3 });
    expect(await value(metrics, "routeleader_route_leader", { route: "default-v4" })).toBe(0);
    expect(await value(metrics, "routeleader_transitions_total", { route: "default-v4", type: "acquired" })).toBe(2);
    expect(await value(metrics, "routeleader_transitions_total", { route: "default-v4", type: "lost", reason: "sessionInvalidated" })).toBe(1);
    expect(await value(metrics, "routeleader_transitions_total", { route: "default-v4", type: "released", reason: "checkFailed" })).toBe(1);
    expect(await value(metrics, "routeleader_failover_seconds_count")).toBe(2);

    metrics.listener({ type: "writeFailed", route: "default-v4", fatal: false, reason: "throttled", retryInMs: 100, at: 4 });
    expect(await value(metrics, "routeleader_errors_total", { component: "routes" })).toBe(1);
  });

  it("records checks, AWS calls, Consul requests and errors", async () => {
    const metrics = createMetrics();
    metrics.recordCheck("egress", true, 12);
    metrics.recordCheck("egress", false, 900);
    metrics.recordAwsCall("ReplaceRoute", "ok", 40);
    metrics.recordAwsCall("ReplaceRoute", "throttled", 5);
    metrics.recordConsulRequest("kv.acquire", "ok");
    metrics.recordError("routes");
    expect(await value(metrics, "routeleader_check_passing", { check: "egress" })).toBe(0);
    expect(await value(metrics, "routeleader_check_latency_seconds_count", { check: "egress" })).toBe(2);
    expect(await value(metrics, "routeleader_aws_calls_total", { action: "ReplaceRoute", outcome: "throttled" })).toBe(1);
    expect(await value(metrics, "routeleader_aws_call_seconds_sum", { action: "ReplaceRoute" })).toBeCloseTo(0.045);
    expect(await value(metrics, "routeleader_consul_requests_total", { op: "kv.acquire", outcome: "ok" })).toBe(1);
    expect(await value(metrics, "routeleader_errors_total", { component: "routes" })).toBe(1);
  });

  it("keeps two instances apart (no global registry)", async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.recordError("consul");
    expect(await value(a, "routeleader_errors_total", { component: "consul" })).toBe(1);
    expect(await value(b, "routeleader_errors_total", { component: "consul" })).toBeUndefined();
  });
});
