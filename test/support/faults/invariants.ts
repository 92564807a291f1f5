import type { ProxyCall } from "../fault-proxy.js";
import { holderAt, type Claim } from "./systems.js";

/** Checks over one trial: the proxy's log of route writes against the systems' claims. */

const ROUTE_WRITES = new Set(["ReplaceRoute", "CreateRoute", "DeleteRoute"]);

export function routeWrites(calls: readonly ProxyCall[], tableId: string): ProxyCall[] {
  return calls.filter((c) => ROUTE_WRITES.has(c.action) && c.params.RouteTableId === tableId && c.caller !== "admin");
}

/**
 * Writes made by a host that did not hold the route at that moment: it had not acquired it,
 * had released it, or another host had acquired it since (the writer may not have known yet).
 */
export function splitBrainWrites(writes: readonly ProxyCall[], claims: readonly Claim[]): ProxyCall[] {
  const sorted = [...claims].sort((a, b) => a.t - b.t);
  return writes.filter((w) => holderAt(sorted, w.time) !== w.caller);
}

/** How often the route's target changed, following the successful writes from `initial`. */
export function routeChanges(writes: readonly ProxyCall[], initial: string | undefined): number {
  let target = initial;
  let changes = 0;
  for (const w of writes) {
    if (w.status !== 200 || w.action === "DeleteRoute") continue;
    const next = w.params.InstanceId ?? w.params.NetworkInterfaceId;
    if (next !== target) {
      changes++;
      target = next;
    }
  }
  return changes;
}
