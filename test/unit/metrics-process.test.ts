import { describe, expect, it } from "vitest";
import { awsClientOptions } from "../../agent/aws/clients.js";
import { firstValue, parseExposition } from "../support/prometheus-text.js";
import { createMetrics, processMetrics } from "../../agent/observe/metrics.js";

/**
 * The AWS clients, the Consul client and the health monitor record through `processMetrics`
 * by default, so /metrics shows their calls without wiring through the agent. (The scrape of a
 * running agent is test/integration/metrics-scrape.test.ts.) This file must own a fresh module
 * instance: nothing may have created a Metrics before the first test.
 */

/** Reads one sample from the exposition text, as a scraper would: the first line whose labels include `labels`. */
async function value(metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string>): Promise<number | undefined> {
  return firstValue(parseExposition((await metrics.render()).body), name, labels);
}

describe("process-wide recording", () => {
  it("truth: calls recorded before the agent's Metrics exists (start-up) are replayed into it; later ones reach every attached Metrics, not a detached one", async () => {
    processMetrics.recordConsulRequest("agent.self", "ok");
    processMetrics.recordAwsCall("DescribeRouteTables", "ok", 20);
    const agent = createMetrics();
    expect(await value(agent, "routeleader_consul_requests_total", { op: "agent.self", outcome: "ok" })).toBe(1);
    expect(await value(agent, "routeleader_aws_calls_total", { action: "DescribeRouteTables", outcome: "ok" })).toBe(1);

    const detached = createMetrics({ attach: false });
    processMetrics.recordCheck("egress", false, 30);
    processMetrics.recordError("consul");
    expect(await value(agent, "routeleader_check_passing", { check: "egress" })).toBe(0);
    expect(await value(agent, "routeleader_errors_total", { component: "consul" })).toBe(1);
    expect(await value(detached, "routeleader_errors_total", { component: "consul" })).toBeUndefined();
    expect(await value(detached, "routeleader_consul_requests_total", { op: "agent.self", outcome: "ok" })).toBeUndefined();
  });
});

describe("AWS region", () => {
  const identity = { region: "eu-west-1" };
  it("truth: config.region, else AWS_REGION, else the instance's region from metadata", () => {
    expect(awsClientOptions({ region: "us-west-2", aws: {} }, identity, { AWS_REGION: "ap-south-1" }).region).toBe("us-west-2");
    expect(awsClientOptions({ aws: {} }, identity, { AWS_REGION: "ap-south-1" }).region).toBe("ap-south-1");
    expect(awsClientOptions({ aws: {} }, identity, { AWS_REGION: "" }).region).toBe("eu-west-1");
    expect(awsClientOptions({ aws: {} }, identity, {}).region).toBe("eu-west-1");
  });
});
