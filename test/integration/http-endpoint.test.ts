import { afterEach, describe, expect, it } from "vitest";
import { createMetrics } from "../../agent/observe/metrics.js";
import { startStatusServer, type Health, type StatusServer } from "../../agent/observe/http.js";
import { captureLogger } from "../support/log-capture.js";

describe("local HTTP endpoint (real server on 127.0.0.1, port 0)", () => {
  let server: StatusServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function start(health: () => Health = () => ({ ok: true }), status: () => unknown = () => ({ routes: [] })) {
    const metrics = createMetrics({ routes: ["default-v4"] });
    const { logger, lines } = captureLogger();
    server = await startStatusServer({ listen: "127.0.0.1:0", metrics, status, health, logger });
    if (!server) throw new Error("server disabled");
    return { metrics, lines, url: server.url };
  }

  it("serves Prometheus text on /metrics, including the route leader gauge after election events", async () => {
    const { metrics, url } = await start();
    metrics.listener({ type: "acquired", route: "default-v4", lockIndex: 7, waitedMs: 900, at: 0 });
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain('routeleader_route_leader{route="default-v4"} 1');
    expect(text).toContain('routeleader_transitions_total{route="default-v4",type="acquired",reason="acquired"} 1');
  });

  it("serves the injected status as JSON on /status", async () => {
    const { url } = await start(undefined, async () => ({ routes: [{ name: "default-v4", holder: "i-0abc" }] }));
    const res = await fetch(`${url}/status`);
    expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await res.json()).toEqual({ routes: [{ name: "default-v4", holder: "i-0abc" }] });
  });

  it("answers /healthz 200 when healthy and 503 with the reason when not", async () => {
    let health: Health = { ok: true };
    const { url } = await start(() => health);
    const ok = await fetch(`${url}/healthz`);
    expect([ok.status, await ok.text()]).toEqual([200, "ok\n"]);
    health = { ok: false, reason: "lease past its deadline on default-v4" };
    const bad = await fetch(`${url}/healthz`);
    expect(bad.status).toBe(503);
    expect(bad.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await bad.text()).toContain("lease past its deadline on default-v4");
  });

  it("answers 404 for other paths, 405 for other methods, and 500 when the status provider throws", async () => {
    const { url, lines } = await start(undefined, () => {
      throw new Error("consul unreachable");
    });
    expect((await fetch(`${url}/`)).status).toBe(404);
    expect((await fetch(`${url}/metricsx`)).status).toBe(404);
    expect((await fetch(`${url}/metrics`, { method: "POST" })).status).toBe(405);
    const failed = await fetch(`${url}/status`);
    expect(failed.status).toBe(500);
    expect(await failed.text()).toContain("consul unreachable");
    expect(lines).toContainEqual(expect.objectContaining({ msg: "http endpoint handler failed", path: "/status" }));
  });

  it("binds loopback for ':port' and does not start for ''", async () => {
    const { logger } = captureLogger();
    const metrics = createMetrics();
    const common = { metrics, status: () => ({}), health: () => ({ ok: true }), logger };
    server = await startStatusServer({ listen: ":0", ...common });
    expect(server?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await startStatusServer({ listen: "", ...common })).toBeUndefined();
  });
});
