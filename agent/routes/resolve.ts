import type { EC2Client } from "@aws-sdk/client-ec2";
import { withRetries, type RetryPolicy } from "../aws/retry.js";
import type { RouteConfig } from "../config/schema.js";
import { EXIT, ExitError } from "../exit-codes.js";
import { describeVpcTables, vpcOfSubnet, vpcOfTable } from "./ec2-tables.js";
import type { TableSnapshot } from "./route-state.js";
import { describeSelector, matchesSelector, selectorIds, selectorSubnets, type SelectorContext } from "./selector.js";

/**
 * Finds every route's tables among this VPC's tables: one DescribeRouteTables filtered on
 * `vpc-id`, selectors evaluated here. Ids and subnets a selector names but the VPC lacks are
 * looked up region-wide only to say why: unknown, or in another VPC. Never a write.
 * Throws ExitError(EXIT.aws).
 */
export async function resolveRouteTables(ec2: EC2Client, routes: readonly RouteConfig[], vpcId: string, policy: RetryPolicy): Promise<Map<string, string[]>> {
  const tables = await withRetries("ec2:DescribeRouteTables", `tables of ${vpcId}`, policy, (signal) => describeVpcTables(ec2, vpcId, undefined, signal));
  const known = new Set(tables.map((t) => t.id));
  for (const route of routes) {
    for (const id of selectorIds(route.table)) {
      if (known.has(id)) continue;
      const vpc = await withRetries("ec2:DescribeRouteTables", `route table ${id}`, policy, (signal) => vpcOfTable(ec2, id, signal));
      throw new ExitError(
        vpc === undefined
          ? `route "${route.name}": unknown route table id ${id} (no such table in ${vpcId} or anywhere in the region)`
          : `route "${route.name}": route table ${id} is in ${vpc}, not in this instance's VPC ${vpcId}: refusing to manage another VPC's table`,
        EXIT.aws,
      );
    }
  }
  const implicitlyMainSubnets = new Set<string>();
  const associated = new Set(tables.flatMap((t) => t.subnetIds));
  for (const route of routes) {
    for (const subnet of selectorSubnets(route.table)) {
      if (associated.has(subnet) || implicitlyMainSubnets.has(subnet)) continue;
      const vpc = await withRetries("ec2:DescribeSubnets", `subnet ${subnet}`, policy, (signal) => vpcOfSubnet(ec2, subnet, signal));
      if (vpc !== vpcId) {
        throw new ExitError(
          vpc === undefined
            ? `route "${route.name}": unknown subnet ${subnet}`
            : `route "${route.name}": subnet ${subnet} is in ${vpc}, not in this instance's VPC ${vpcId}: refusing to manage another VPC's table`,
          EXIT.aws,
        );
      }
      implicitlyMainSubnets.add(subnet);
    }
  }
  const ctx: SelectorContext = { implicitlyMainSubnets };
  const resolved = new Map<string, string[]>();
  for (const route of routes) {
    const ids = selectTables(tables, route, ctx);
    if (ids.length === 0) {
      throw new ExitError(`route "${route.name}": table selector ${describeSelector(route.table)} matches no route table in ${vpcId}`, EXIT.aws);
    }
    resolved.set(route.name, ids);
  }
  return resolved;
}

/**
 * Two routes resolving to the same table and destination would fight over one route entry
 * (each holder pointing it at itself): refused, naming both routes. Destinations are compared
 * in their canonical form. Throws ExitError(EXIT.config).
 */
export function assertOneRoutePerEntry(routes: readonly Pick<RouteConfig, "name" | "destination">[], tablesOf: ReadonlyMap<string, readonly string[]>): void {
  const owner = new Map<string, string>();
  for (const route of routes) {
    for (const tableId of tablesOf.get(route.name) ?? []) {
      const key = `${tableId} ${route.destination}`;
      const prior = owner.get(key);
      if (prior !== undefined) {
        throw new ExitError(
          `routes "${prior}" and "${route.name}" both manage ${route.destination} in ${tableId} (their table selectors resolve to the same table): give each table and destination one route`,
          EXIT.config,
        );
      }
      owner.set(key, route.name);
    }
  }
}

export function selectTables(tables: readonly TableSnapshot[], route: Pick<RouteConfig, "table">, ctx: SelectorContext): string[] {
  return tables.filter((t) => matchesSelector(t, route.table, ctx)).map((t) => t.id).sort();
}

/** A route's table set as one reconcile re-resolved it against the tables it just described. */
export interface LiveResolution {
  /** Each route's tables now (sorted): what the reconcile writes. */
  readonly tables: Map<string, string[]>;
  /** Tables a route's selector matches now and did not before: the holder claims them. */
  readonly started: { route: string; table: string }[];
  /** Tables a route matched before and does not now (untagged, re-associated, deleted): left as they are. */
  readonly stopped: { route: string; table: string }[];
  /** Table and destination two routes' selectors both match: given to the route that had it, else to neither. */
  readonly conflicts: { table: string; destination: string; routes: string[]; keptBy?: string }[];
}

/**
 * Re-resolves every route's selector against one describe of the VPC (pure). Only tables of
 * `vpcId` are considered, whatever the describe returned: a selector can never reach another
 * VPC. `knownSubnets` are the selector subnets proven to be in this VPC (at start or reload):
 * one without an explicit association now is routed through the main table.
 */
export function reresolveTables(
  described: readonly TableSnapshot[],
  routes: readonly Pick<RouteConfig, "name" | "table" | "destination">[],
  vpcId: string,
  knownSubnets: ReadonlySet<string>,
  previous: ReadonlyMap<string, readonly string[]>,
): LiveResolution {
  const tables = described.filter((t) => t.vpcId === vpcId);
  const associated = new Set(tables.flatMap((t) => t.subnetIds));
  const ctx: SelectorContext = { implicitlyMainSubnets: new Set([...knownSubnets].filter((s) => !associated.has(s))) };
  const wanted = new Map(routes.map((r) => [r.name, selectTables(tables, r, ctx)]));
  // One route per table and destination: a newcomer never takes an entry from its route.
  const claimants = new Map<string, string[]>();
  for (const route of routes) for (const table of wanted.get(route.name) ?? []) {
    const key = `${table} ${route.destination}`;
    claimants.set(key, [...(claimants.get(key) ?? []), route.name]);
  }
  const conflicts: LiveResolution["conflicts"] = [];
  const refused = new Set<string>();
  for (const [key, names] of claimants) {
    if (names.length < 2) continue;
    const [table, destination] = key.split(" ") as [string, string];
    const keptBy = names.find((n) => previous.get(n)?.includes(table));
    conflicts.push({ table, destination, routes: names, ...(keptBy ? { keptBy } : {}) });
    for (const n of names) if (n !== keptBy) refused.add(`${n} ${table}`);
  }
  const result = new Map<string, string[]>();
  const started: LiveResolution["started"] = [];
  const stopped: LiveResolution["stopped"] = [];
  for (const route of routes) {
    const now = (wanted.get(route.name) ?? []).filter((t) => !refused.has(`${route.name} ${t}`));
    result.set(route.name, now);
    const before = previous.get(route.name) ?? [];
    for (const t of now) if (!before.includes(t)) started.push({ route: route.name, table: t });
    for (const t of before) if (!now.includes(t)) stopped.push({ route: route.name, table: t });
  }
  return { tables: result, started, stopped, conflicts };
}
