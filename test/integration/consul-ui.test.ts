import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, type StartedBrowser } from "../support/browser.js";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";
import { openKvKey, openServiceInstance, openServiceInstances, waitForText } from "../support/consul-ui.js";
import { waitUntil } from "../support/process.js";

// The committed picture in docs/ is refreshed with UPDATE_DOCS=1; ordinary runs write under
// test-results/ so a test run leaves the work tree clean (instance ids differ every run).
const SCREENSHOT = fileURLToPath(new URL(process.env.UPDATE_DOCS === "1" ? "../../docs/consul-ui-leader.png" : "../../test-results/consul-ui-leader.png", import.meta.url));

/**
 * Leadership in the Consul UI, as the real agents publish it: two agent processes (one per
 * AZ) on a 3-server Consul cluster, moto and metadata mocks; Chromium opens a client agent's UI.
 */
describe("leadership in the Consul UI (real agents, real Consul, headless Chromium)", () => {
  let sim: SimCluster;
  let browser: StartedBrowser;
  let page: Page;
  let leader: SimNode;
  let follower: SimNode;
  let ui: string;
  const routeKey = "routeleader/ui/routes/default-v4";

  beforeAll(async () => {
    sim = await startSimCluster({
      cluster: "ui",
      nodes: [
        { name: "nat-a", az: "us-east-1a" },
        { name: "nat-b", az: "us-east-1b" },
      ],
      tables: [{ name: "private-a", az: "us-east-1a" }],
      routes: [{ name: "default-v4", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0", checks: ["egress"] }],
      checks: { egress: { type: "ping", host: "127.0.0.1", every: "1s", timeout: "900ms", rise: 1, fall: 3 } },
    });
    await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
    const holders = await sim.waitForHolders(["default-v4"], (_r, i) => !!i, 60_000);
    leader = sim.nodeByInstance(holders.get("default-v4")?.instanceId) as SimNode;
    follower = sim.nodes.find((n) => n !== leader) as SimNode;
    ui = leader.consul.httpAddr;
    await waitUntil(
      "leader tag and check outputs in the catalog",
      async () => {
        const entries = await leader.consul.get<{ Service: { ID: string; Tags: string[] }; Checks: { Output: string }[] }[]>("/v1/health/service/routeleader");
        const mine = entries.find((e) => e.Service.ID === `routeleader-${leader.instanceId}`);
        return mine?.Service.Tags.includes("leader:default-v4") && mine.Checks.some((c) => /ping 127\.0\.0\.1/.test(c.Output)) ? true : undefined;
      },
      { timeoutMs: 30_000 },
    );
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 600 } });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await sim?.stop();
  }, 120_000);

  it("lists the service's instances with the leader's route tag, and saves the screenshot to docs/", async () => {
    const leaderId = `routeleader-${leader.instanceId}`;
    const followerId = `routeleader-${follower.instanceId}`;
    await openServiceInstances(page, ui, "routeleader", { expectInstance: followerId });
    await waitForText(page, "leader:default-v4");
    const leaderRow = page.locator("li", { hasText: leaderId }).first();
    await expect(leaderRow.innerText()).resolves.toContain("leader:default-v4");
    const followerRow = page.locator("li", { hasText: followerId }).first();
    await expect(followerRow.innerText()).resolves.not.toContain("leader:");
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it("shows the leader instance's check output in words and the route it leads in its meta", async () => {
    const leaderId = `routeleader-${leader.instanceId}`;
    await openServiceInstance(page, ui, "routeleader", leaderId);
    await waitForText(page, /ping 127\.0\.0\.1/);
    await openServiceInstance(page, ui, "routeleader", leaderId, { tab: "metadata" });
    await waitForText(page, "leader:default-v4");
    const leadsRow = page.getByRole("row").filter({ hasText: "leads" }).first();
    await expect(leadsRow.innerText()).resolves.toContain("default-v4");
  });

  it("shows the holder JSON and its lock session on the route's KV page", async () => {
    await openKvKey(page, ui, routeKey);
    await waitForText(page, new RegExp(`"instanceId":\\s*"${leader.instanceId}"`));
    await waitForText(page, /Lock Session/i);
  });
});
