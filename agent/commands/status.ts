import type { Config } from "../config/index.js";
import type { KvEntry } from "../consul/index.js";
import { parseHolder, routeKey } from "../election/holder.js";
import type { RouteObservation } from "../routes/controller.js";

/** One line of `routeleader status`: what Consul says next to what the route table says. */
export interface StatusRow {
  route: string;
  table: string;
  destination: string;
  /** Instance id of the lock holder (Consul), when the key is held. */
  holder: string | null;
  /** The fallback target the holder points the route at, when it holds the key for the fallback. */
  fallback: string | null;
  holderAz: string | null;
  /** When the holder acquired the lock (ISO time from the holder value). */
  since: string | null;
  /** What the route table points the destination at. */
  target: string | null;
  state: RouteObservation["state"];
  drift: boolean;
  driftReason: string | null;
}

/**
 * Joins Consul's holders with the tables' actual targets. Drift: the key is held and the
 * table points elsewhere, is blackholed or lacks the route. A free key is no drift (the last
 * holder's route is kept on release by default).
 */
export function statusRows(config: Config, observations: readonly RouteObservation[], entries: readonly KvEntry[]): StatusRow[] {
  const byKey = new Map(entries.map((e) => [e.key, e]));
  return observations.map((o) => {
    const entry = byKey.get(routeKey(config.cluster, o.routeName));
    const holder = entry?.session ? parseHolder(entry.value) : undefined;
    let driftReason: string | null = null;
    if (holder) {
      if (o.state === "absent") driftReason = "route missing from the table";
      else if (o.state === "blackhole") driftReason = `route blackholed (target ${o.target ?? "none"})`;
      else if (holder.fallback) {
        if (o.target !== holder.fallback) driftReason = `table points at ${o.target ?? "nothing"}, fallback ${holder.fallback} held by ${holder.instanceId}`;
      } else if (o.target !== holder.instanceId && o.target !== holder.eni) driftReason = `table points at ${o.target ?? "nothing"}, holder is ${holder.instanceId}`;
    }
    return {
      route: o.routeName,
      table: o.tableId,
      destination: o.destination,
      holder: holder?.instanceId ?? null,
      fallback: holder?.fallback ?? null,
      holderAz: holder?.az ?? null,
      since: holder?.acquiredAt || null,
      target: o.target ?? null,
      state: o.state,
      drift: driftReason !== null,
      driftReason,
    };
  });
}

/** Left-aligned text columns, two spaces apart: the header line, then one line per row. */
export function formatColumns(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const format = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  return [format(header), ...rows.map(format)];
}

/** A plain-text table for a terminal. */
export function renderStatusTable(rows: readonly StatusRow[]): string {
  const header = ["ROUTE", "TABLE", "DESTINATION", "HOLDER", "AZ", "SINCE", "TARGET", "STATE", ""];
  const lines = rows.map((r) => [r.route, r.table, r.destination, r.holder ? (r.fallback ? `${r.fallback} (fallback, by ${r.holder})` : r.holder) : "-", r.holderAz ?? "-", r.since ?? "-", r.target ?? "-", r.state, r.drift ? `DRIFT: ${r.driftReason}` : ""]);
  return formatColumns(header, lines).join("\n");
}
