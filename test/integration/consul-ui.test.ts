import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulApi, ConsulConnection } from "../../agent/consul/index.js";
import type { HolderInfo } from "../../agent/election/events.js";
import { launchBrowser, type StartedBrowser } from "../support/browser.js";
import { startConsulDev, type StartedConsul } from "../support/consul.js";
import { openKvKey, openServiceInstance, openServiceInstances, waitForText } from "../support/consul-ui.js";
import { waitUntil } from "../support/process.js";

const SCREENSHOT = fileURLToPath(new URL("../../docs/consul-ui-leader.png", import.meta.url));
const ROUTE_KEY = "routeleader/demo/routes/default-v4";
const EGRESS_OUTPUT = "egress ping 127.0.0.1: 3/3 ok, 0.1 ms";

interface Node {
  instanceId: string;
  az: string;
  leads?: string;
}

/** Registers a node as the agent does: tags and meta naming what it leads, TTL checks with outputs in words. */
async function registerNode(api: ConsulApi, node: Node): Promise<void> {
  const id = `routeleader-${node.instanceId}`;
  await api.registerService({
    id,
    name: "routeleader",
    tags: node.leads ? [`leader:${node.leads}`] : [],
    meta: { instanceId: node.instanceId, az: node.az, ...(node.leads ? { leads: node.leads } : {}) },
    checks: [
      { id: `${id}:liveness`, name: "liveness", ttlMs: 60_000, status: "critical" },
      { id: `${id}:egress`, name: "egress", ttlMs: 60_000, status: "critical" },
    ],
  });
  // A status change reaches the catalog at once; an output-only change waits for the agent's
  // check_update_interval (5 min by default), so checks start critical and then pass.
  await api.updateTtlCheck(`${id}:liveness`, "passing", "agent loop alive");
  await api.updateTtlCheck(`${id}:egress`, "passing", node.leads ? EGRESS_OUTPUT : "egress ping 127.0.0.1: 3/3 ok, 0.2 ms");
}

describe("leadership in the Consul UI (real Consul dev agent, headless Chromium)", () => {
  let consul: StartedConsul;
  let conn: ConsulConnection;
  let browser: StartedBrowser;
  let page: Page;

  beforeAll(async () => {
    consul = await startConsulDev("nat-a");
    conn = new ConsulConnection({ address: consul.httpAddr });
    const api = new ConsulApi(conn);
    await registerNode(api, { instanceId: "i-0abc", az: "eu-west-1a", leads: "default-v4" });
    await registerNode(api, { instanceId: "i-0def", az: "eu-west-1b" });
    const session = await api.createSession({
      name: "routeleader i-0abc",
      ttlMs: 30_000,
      lockDelayMs: 3000,
      behavior: "release",
      nodeChecks: ["serfHealth"],
      serviceChecks: ["routeleader-i-0abc:liveness", "routeleader-i-0abc:egress"],
    });
    const holder: HolderInfo = {
      instanceId: "i-0abc",
      az: "eu-west-1a",
      eni: "eni-0abc1234",
      privateIp: "10.0.1.10",
      session,
      lockIndex: 1,
      acquiredAt: new Date(0).toISOString(),
      agentVersion: "0.1.0",
    };
    expect(await api.acquire(ROUTE_KEY, session, JSON.stringify(holder))).toBe(true);
    await waitUntil(
      "check outputs in the catalog",
      async () => {
        const checks = await consul.get<{ Output: string }[]>("/v1/health/checks/routeleader");
        return checks.some((c) => c.Output === EGRESS_OUTPUT) ? true : undefined;
      },
      { timeoutMs: 10_000 },
    );
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 600 } });
  });

  afterAll(async () => {
    await browser?.close();
    conn?.close();
    await consul?.stop();
  });

  it("lists the service's instances with the leader's route tag, and saves the screenshot to docs/", async () => {
    await openServiceInstances(page, consul.httpAddr, "routeleader", { expectInstance: "routeleader-i-0def" });
    await waitForText(page, "leader:default-v4");
    const leaderRow = page.locator("li", { hasText: "routeleader-i-0abc" }).first();
    await expect(leaderRow.innerText()).resolves.toContain("leader:default-v4");
    const followerRow = page.locator("li", { hasText: "routeleader-i-0def" }).first();
    await expect(followerRow.innerText()).resolves.not.toContain("leader:");
    mkdirSync(new URL("../../docs/", import.meta.url), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it("shows the leader instance's check output in words and the route it leads in its meta", async () => {
    await openServiceInstance(page, consul.httpAddr, "routeleader", "routeleader-i-0abc");
    await waitForText(page, EGRESS_OUTPUT);
    await openServiceInstance(page, consul.httpAddr, "routeleader", "routeleader-i-0abc", { tab: "metadata" });
    await waitForText(page, "leader:default-v4");
    const leadsRow = page.getByRole("row").filter({ hasText: "leads" }).first();
    await expect(leadsRow.innerText()).resolves.toContain("default-v4");
  });

  it("shows the holder JSON and its lock session on the route's KV page", async () => {
    await openKvKey(page, consul.httpAddr, ROUTE_KEY);
    await waitForText(page, /"instanceId":\s*"i-0abc"/);
    await waitForText(page, /Lock Session/i);
  });
});
