import type { Clock } from "../clock.js";
import type { Identity } from "../identity/index.js";
import { VERSION } from "../version.js";
import type { HolderInfo, ReleaseReason } from "./events.js";

/** The Consul key of a route: routeleader/<cluster>/routes/<route-name>. */
export function routeKey(cluster: string, route: string): string {
  return `${routesPrefix(cluster)}${route}`;
}

export function routesPrefix(cluster: string): string {
  return `routeleader/${cluster}/routes/`;
}

/** The route name of a key under the prefix, or undefined for anything else. */
export function routeOfKey(cluster: string, key: string): string | undefined {
  const prefix = routesPrefix(cluster);
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  return rest && !rest.includes("/") ? rest : undefined;
}

export function encodeHolder(holder: HolderInfo): string {
  return JSON.stringify(holder, null, 2);
}

/**
 * Parses a key's value leniently (an operator may have written anything there): fields of
 * the wrong type are dropped, and garbage yields undefined rather than an exception.
 */
export function parseHolder(value: string | null | undefined): HolderInfo | undefined {
  if (!value) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (!raw || typeof raw !== "object") return undefined;
  const r = raw as Record<string, unknown>;
  const str = (k: string) => (typeof r[k] === "string" ? (r[k] as string) : "");
  if (!str("instanceId")) return undefined;
  return {
    instanceId: str("instanceId"),
    az: str("az"),
    eni: str("eni"),
    privateIp: str("privateIp"),
    session: str("session"),
    lockIndex: typeof r.lockIndex === "number" ? r.lockIndex : 0,
    acquiredAt: str("acquiredAt"),
    agentVersion: str("agentVersion"),
    ...(str("releasedAt") ? { releasedAt: str("releasedAt") } : {}),
    ...(str("releaseReason") ? { releaseReason: str("releaseReason") } : {}),
    ...(str("fallback") ? { fallback: str("fallback") } : {}),
  };
}

/** The value written with an acquire, or with a release (marked released, keeping when it was acquired). */
export function holderOf(identity: Identity, clock: Clock, session: string, lockIndex: number, release?: { reason: ReleaseReason; acquiredAt: number }, fallback?: string): HolderInfo {
  return {
    instanceId: identity.instanceId,
    az: identity.az,
    eni: identity.eniId,
    privateIp: identity.privateIp,
    session,
    lockIndex,
    acquiredAt: new Date(release ? clock.wallNow() - (clock.now() - release.acquiredAt) : clock.wallNow()).toISOString(),
    agentVersion: VERSION,
    ...(release ? { releasedAt: new Date(clock.wallNow()).toISOString(), releaseReason: release.reason } : {}),
    ...(fallback ? { fallback } : {}),
  };
}
