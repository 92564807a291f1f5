import type { Page } from "playwright-core";
import { consulHttp } from "./consul.js";

/**
 * Navigation in the Consul web UI (served by every agent at `${httpAddr}/ui/`), for tests and
 * screenshots. Each helper opens a page and waits until the data it names is rendered (the
 * UI loads it through blocking queries, so "network idle" is not a usable signal).
 */

export type InstanceTab = "health-checks" | "metadata";

export function consulUiUrl(httpAddr: string, path: string, datacenter = "dc1"): string {
  return `${httpAddr}/ui/${datacenter}/${path.replace(/^\//, "")}`;
}

/** Resolves once `text` is visible somewhere on the page. */
export async function waitForText(page: Page, text: string | RegExp, timeoutMs?: number): Promise<void> {
  await page.getByText(text).first().waitFor({ state: "visible", ...(timeoutMs ? { timeout: timeoutMs } : {}) });
}

/** The node a service instance is registered on (the UI's instance URL names it). */
export async function nodeOfServiceInstance(httpAddr: string, service: string, instanceId: string): Promise<string> {
  const { json } = await consulHttp("GET", `${httpAddr}/v1/catalog/service/${encodeURIComponent(service)}`);
  const entry = (json as { Node: string; ServiceID: string }[]).find((e) => e.ServiceID === instanceId);
  if (!entry) throw new Error(`service ${service} has no instance ${instanceId} in the catalog at ${httpAddr}`);
  return entry.Node;
}

/** The service's instance list: every node, its tags (routes it leads) and check summary. */
export async function openServiceInstances(page: Page, httpAddr: string, service: string, options: { datacenter?: string; expectInstance?: string } = {}): Promise<void> {
  await page.goto(consulUiUrl(httpAddr, `services/${encodeURIComponent(service)}/instances`, options.datacenter));
  await waitForText(page, options.expectInstance ?? service);
}

/** One service instance: its health checks with their outputs, or its tags and meta. */
export async function openServiceInstance(
  page: Page,
  httpAddr: string,
  service: string,
  instanceId: string,
  options: { tab?: InstanceTab; datacenter?: string } = {},
): Promise<void> {
  const node = await nodeOfServiceInstance(httpAddr, service, instanceId);
  const path = `services/${encodeURIComponent(service)}/instances/${encodeURIComponent(node)}/${encodeURIComponent(instanceId)}/health-checks`;
  await page.goto(consulUiUrl(httpAddr, path, options.datacenter));
  await page.getByRole("heading", { name: instanceId }).first().waitFor({ state: "visible" });
  // Loaded directly, the metadata URL redirects to health-checks; the tab link does not.
  if (options.tab === "metadata") {
    await page.getByRole("link", { name: "Tags & Meta" }).click();
    await page.waitForURL(/\/metadata$/);
    await page.getByRole("heading", { name: "Tags" }).first().waitFor({ state: "visible" });
  }
}

/** The KV editor for one key: its value (the holder JSON) and, when locked, the lock session. */
export async function openKvKey(page: Page, httpAddr: string, key: string, options: { datacenter?: string } = {}): Promise<void> {
  await page.goto(consulUiUrl(httpAddr, `kv/${key.split("/").map(encodeURIComponent).join("/")}/edit`, options.datacenter));
  await waitForText(page, key.split("/").pop() as string);
}
