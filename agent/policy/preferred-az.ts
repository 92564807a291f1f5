import { DescribeRouteTablesCommand, DescribeSubnetsCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { toAwsError } from "../aws/index.js";
import type { RouteConfig } from "../config/index.js";
import { ExitError } from "../exit-codes.js";
import type { Logger } from "../observe/log.js";

/** The AZ shared by every subnet in `azs`, or undefined when there are none or several. */
export function singleAz(azs: readonly string[]): string | undefined {
  const distinct = new Set(azs);
  return distinct.size === 1 ? (distinct.values().next().value as string) : undefined;
}

/**
 * Resolves each route's preferred AZ: an explicit AZ name as given; 'none' → none; 'auto' →
 * the AZ of the subnets associated with the route's tables when they all share one (keeps NAT
 * traffic in-AZ), else none. Two describe calls at start, for all routes together.
 */
export async function resolvePreferredAzs(
  routes: readonly RouteConfig[],
  tablesOf: (route: string) => readonly string[],
  ec2: EC2Client,
  log: Logger,
): Promise<Map<string, string | undefined>> {
  const result = new Map<string, string | undefined>();
  const auto = routes.filter((r) => r.preferredAz === "auto");
  for (const r of routes) if (r.preferredAz !== "auto") result.set(r.name, r.preferredAz === "none" ? undefined : r.preferredAz);
  if (!auto.length) return result;
  const tableIds = [...new Set(auto.flatMap((r) => tablesOf(r.name)))];
  try {
    const tables = tableIds.length ? ((await ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: tableIds }))).RouteTables ?? []) : [];
    const subnetsOfTable = new Map(tables.map((t) => [t.RouteTableId as string, (t.Associations ?? []).map((a) => a.SubnetId).filter((s): s is string => !!s)]));
    const subnetIds = [...new Set([...subnetsOfTable.values()].flat())];
    const subnets = subnetIds.length ? ((await ec2.send(new DescribeSubnetsCommand({ SubnetIds: subnetIds }))).Subnets ?? []) : [];
    const azOfSubnet = new Map(subnets.map((s) => [s.SubnetId as string, s.AvailabilityZone as string]));
    for (const r of auto) {
      const azs = tablesOf(r.name).flatMap((t) => subnetsOfTable.get(t) ?? []).map((s) => azOfSubnet.get(s)).filter((a): a is string => !!a);
      result.set(r.name, singleAz(azs));
    }
  } catch (err) {
    // A missing permission or an unknown id is a deployment error: say so and stop.
    const failure = toAwsError(err, "ec2:DescribeSubnets");
    if (failure instanceof ExitError) throw failure;
    log.warn({ err: (err as Error).message }, "could not resolve preferred AZs; routes have no AZ preference");
    for (const r of auto) result.set(r.name, undefined);
  }
  log.info({ preferredAz: Object.fromEntries([...result].map(([k, v]) => [k, v ?? null])) }, "preferred AZ per route");
  return result;
}
