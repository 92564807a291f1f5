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
