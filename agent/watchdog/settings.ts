import { parseFallback, type Fallback } from "./decide.js";

/** The watchdog's settings, from the function's environment (the stack sets them). */
export interface WatchdogSettings {
  /** routeleader cluster name: a dimension of every metric, and in every event. */
  cluster: string;
  /** Only tables in this VPC are read (empty: any VPC the tables select). */
  vpcId?: string;
  /** The managed tables: these ids... */
  tableIds: string[];
  /** ...or, with no ids, every table carrying this tag. */
  tableTag?: { key: string; value: string };
  /** The managed destinations in each table. */
  destinations: string[];
  /** Fallback by table id; "*" for every managed table. A table's own tag wins over both. */
  fallbacks: Map<string, Fallback>;
  /** How long a dead target must stay dead (read again after this) before the route moves. */
  graceMs: number;
  /** CloudWatch namespace of the embedded-metric-format lines. */
  namespace: string;
  /** EventBridge bus for the route-moved events; undefined: no events. */
  eventBus?: string;
}

/** The tag on a route table naming the fallback for one destination, e.g. routeleader:fallback:0.0.0.0/0. */
export const FALLBACK_TAG_PREFIX = "routeleader:fallback:";
export const EVENT_SOURCE = "routeleader.watchdog";
export const EVENT_DETAIL_TYPE = "routeleader route moved";

export class SettingsError extends Error {}

function list(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * ROUTELEADER_CLUSTER (required), ROUTELEADER_VPC_ID, ROUTELEADER_TABLE_IDS (comma-separated)
 * or ROUTELEADER_TABLE_TAG (key=value), ROUTELEADER_DESTINATIONS (default 0.0.0.0/0),
 * ROUTELEADER_FALLBACKS (comma-separated `rtb-…=nat-…|eni-…` or `*=…`),
 * ROUTELEADER_GRACE_SECONDS (default 20), ROUTELEADER_METRICS_NAMESPACE (default routeleader),
 * ROUTELEADER_EVENT_BUS (default "default"; "none" sends no events).
 */
export function settingsFromEnv(env: Record<string, string | undefined>): WatchdogSettings {
  const cluster = env.ROUTELEADER_CLUSTER?.trim();
  if (!cluster) throw new SettingsError("ROUTELEADER_CLUSTER is required");
  const tableIds = list(env.ROUTELEADER_TABLE_IDS);
  for (const id of tableIds) if (!/^rtb-[0-9a-f]+$/.test(id)) throw new SettingsError(`ROUTELEADER_TABLE_IDS: ${id} is not a route table id`);
  let tableTag: WatchdogSettings["tableTag"];
  const tag = env.ROUTELEADER_TABLE_TAG?.trim();
  if (tag) {
    const eq = tag.indexOf("=");
    if (eq <= 0) throw new SettingsError(`ROUTELEADER_TABLE_TAG must be key=value, not ${tag}`);
    tableTag = { key: tag.slice(0, eq), value: tag.slice(eq + 1) };
  }
  if (!tableIds.length && !tableTag) throw new SettingsError("set ROUTELEADER_TABLE_IDS or ROUTELEADER_TABLE_TAG: the watchdog manages no table otherwise");
  const destinations = list(env.ROUTELEADER_DESTINATIONS ?? "0.0.0.0/0");
  const fallbacks = new Map<string, Fallback>();
  for (const entry of list(env.ROUTELEADER_FALLBACKS)) {
    const eq = entry.indexOf("=");
    const table = eq > 0 ? entry.slice(0, eq) : "*";
    const fallback = parseFallback(eq > 0 ? entry.slice(eq + 1) : entry);
    if (!fallback) throw new SettingsError(`ROUTELEADER_FALLBACKS: ${entry}: the fallback must be a NAT gateway (nat-…) or a network interface (eni-…)`);
    if (table !== "*" && !/^rtb-[0-9a-f]+$/.test(table)) throw new SettingsError(`ROUTELEADER_FALLBACKS: ${entry}: ${table} is neither a route table id nor *`);
    fallbacks.set(table, fallback);
  }
  const grace = Number(env.ROUTELEADER_GRACE_SECONDS ?? "20");
  if (!Number.isFinite(grace) || grace < 0 || grace > 600) throw new SettingsError("ROUTELEADER_GRACE_SECONDS must be a number of seconds from 0 to 600");
  const bus = env.ROUTELEADER_EVENT_BUS?.trim() || "default";
  const vpcId = env.ROUTELEADER_VPC_ID?.trim();
  return {
    cluster,
    ...(vpcId ? { vpcId } : {}),
    tableIds,
    ...(tableTag ? { tableTag } : {}),
    destinations,
    fallbacks,
    graceMs: Math.round(grace * 1000),
    namespace: env.ROUTELEADER_METRICS_NAMESPACE?.trim() || "routeleader",
    ...(bus === "none" ? {} : { eventBus: bus }),
  };
}

/** A table's fallback for a destination: its tag `routeleader:fallback:<destination>`, else the setting for the table, else "*". */
export function fallbackFor(settings: WatchdogSettings, tableId: string, tags: Readonly<Record<string, string>>, destination: string): Fallback | undefined {
  return parseFallback(tags[`${FALLBACK_TAG_PREFIX}${destination}`]) ?? settings.fallbacks.get(tableId) ?? settings.fallbacks.get("*");
}
