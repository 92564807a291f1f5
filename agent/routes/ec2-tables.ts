import {
  CreateRouteCommand,
  DeleteRouteCommand,
  DescribeRouteTablesCommand,
  DescribeSubnetsCommand,
  ReplaceRouteCommand,
  type EC2Client,
  type Filter,
} from "@aws-sdk/client-ec2";
import { parseCidr } from "../config/cidr.js";
import { toTableSnapshot, type TableSnapshot } from "./route-state.js";

/**
 * Route tables of one VPC in one call (paginated only when EC2 says so). moto answers an
 * HTML 500 for `route.instance-id` and similar filters, and real AWS cannot filter on the
 * route target's state: only `vpc-id` and `route-table-id` are sent; the rest is evaluated
 * here.
 */
export async function describeVpcTables(ec2: EC2Client, vpcId: string, tableIds: readonly string[] | undefined, signal?: AbortSignal): Promise<TableSnapshot[]> {
  const filters: Filter[] = [{ Name: "vpc-id", Values: [vpcId] }];
  if (tableIds) filters.push({ Name: "route-table-id", Values: [...tableIds] });
  const tables: TableSnapshot[] = [];
  let nextToken: string | undefined;
  do {
    const page = await ec2.send(new DescribeRouteTablesCommand({ Filters: filters, ...(nextToken ? { NextToken: nextToken } : {}) }), { abortSignal: signal });
    tables.push(...(page.RouteTables ?? []).map(toTableSnapshot));
    nextToken = page.NextToken;
  } while (nextToken);
  return tables;
}

/** The VPC of a route table anywhere in the region, or undefined when EC2 does not know the id. */
export async function vpcOfTable(ec2: EC2Client, tableId: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    const out = await ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [tableId] }), { abortSignal: signal });
    return out.RouteTables?.[0]?.VpcId;
  } catch (err) {
    if ((err as { name?: string }).name === "InvalidRouteTableID.NotFound") return undefined;
    // Raw, so the caller's withRetries classifies it (an ExitError would read as transient there).
    throw err;
  }
}

/** The VPC of a subnet, or undefined when EC2 does not know the id. */
export async function vpcOfSubnet(ec2: EC2Client, subnetId: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    const out = await ec2.send(new DescribeSubnetsCommand({ SubnetIds: [subnetId] }), { abortSignal: signal });
    return out.Subnets?.[0]?.VpcId;
  } catch (err) {
    if ((err as { name?: string }).name === "InvalidSubnetID.NotFound") return undefined;
    throw err;
  }
}

export type RouteWrite = "create" | "replace" | "delete";

/** Where a route should point: the instance or its ENI, as the route's `target` says, or the route's fallback. */
export type RouteTarget = { readonly InstanceId: string } | { readonly NetworkInterfaceId: string } | { readonly NatGatewayId: string };

export const WRITE_ACTIONS: Record<RouteWrite, string> = {
  create: "ec2:CreateRoute",
  replace: "ec2:ReplaceRoute",
  delete: "ec2:DeleteRoute",
};

function destinationField(destination: string): { DestinationCidrBlock: string } | { DestinationIpv6CidrBlock: string } {
  const parsed = parseCidr(destination);
  const family = "error" in parsed ? (destination.includes(":") ? 6 : 4) : parsed.family;
  return family === 6 ? { DestinationIpv6CidrBlock: destination } : { DestinationCidrBlock: destination };
}

/** Sends one route write. Never uses DryRun: moto ignores it on route calls and mutates. */
export async function sendRouteWrite(ec2: EC2Client, write: RouteWrite, tableId: string, destination: string, target: RouteTarget, signal: AbortSignal): Promise<void> {
  const where = { RouteTableId: tableId, ...destinationField(destination) };
  const options = { abortSignal: signal };
  switch (write) {
    case "create":
      await ec2.send(new CreateRouteCommand({ ...where, ...target }), options);
      return;
    case "replace":
      await ec2.send(new ReplaceRouteCommand({ ...where, ...target }), options);
      return;
    case "delete":
      await ec2.send(new DeleteRouteCommand(where), options);
      return;
  }
}
