import type { Route, RouteTable } from "@aws-sdk/client-ec2";
import { parseCidr } from "../config/cidr.js";

/** One route of a table, as the agent reasons about it. */
export interface RouteEntry {
  /** Canonical CIDR text (the config's form), IPv4 or IPv6. */
  readonly destination: string;
  readonly instanceId?: string;
  readonly eniId?: string;
  /** Any other kind of target (igw-, nat-, tgw-, pcx-, local…). */
  readonly otherTarget?: string;
  readonly state: "active" | "blackhole";
}

/** A route table, reduced to what selectors and claims look at. */
export interface TableSnapshot {
  readonly id: string;
  readonly vpcId: string;
  readonly main: boolean;
  /** Subnets explicitly associated with this table. */
  readonly subnetIds: readonly string[];
  readonly tags: Readonly<Record<string, string>>;
  readonly routes: readonly RouteEntry[];
}

/** This instance as a route target: either id counts as "ours". */
export interface OwnTarget {
  readonly instanceId: string;
  readonly eniId: string;
  /** The fallback writer's target when it is a NAT gateway. */
  readonly natGatewayId?: string;
}

export function canonicalCidr(text: string): string {
  const parsed = parseCidr(text);
  return "error" in parsed ? text : parsed.text;
}

function toRouteEntry(route: Route): RouteEntry | undefined {
  const cidr = route.DestinationCidrBlock ?? route.DestinationIpv6CidrBlock;
  if (!cidr) return undefined;
  const otherTarget = route.GatewayId ?? route.NatGatewayId ?? route.TransitGatewayId ?? route.VpcPeeringConnectionId ?? route.EgressOnlyInternetGatewayId ?? route.LocalGatewayId ?? route.CarrierGatewayId ?? route.CoreNetworkArn;
  return {
    destination: canonicalCidr(cidr),
    ...(route.InstanceId ? { instanceId: route.InstanceId } : {}),
    ...(route.NetworkInterfaceId ? { eniId: route.NetworkInterfaceId } : {}),
    ...(otherTarget ? { otherTarget } : {}),
    state: route.State === "blackhole" ? "blackhole" : "active",
  };
}

export function toTableSnapshot(table: RouteTable): TableSnapshot {
  const associations = table.Associations ?? [];
  return {
    id: table.RouteTableId ?? "",
    vpcId: table.VpcId ?? "",
    main: associations.some((a) => a.Main === true),
    subnetIds: associations.flatMap((a) => (a.SubnetId ? [a.SubnetId] : [])),
    tags: Object.fromEntries((table.Tags ?? []).flatMap((t) => (t.Key !== undefined ? [[t.Key, t.Value ?? ""]] : []))),
    routes: (table.Routes ?? []).flatMap((r) => toRouteEntry(r) ?? []),
  };
}

export function findRoute(table: TableSnapshot, destination: string): RouteEntry | undefined {
  const wanted = canonicalCidr(destination);
  return table.routes.find((r) => r.destination === wanted);
}

/** AWS fills both InstanceId and NetworkInterfaceId of an instance route; moto only one. */
export function isOurs(route: RouteEntry, me: OwnTarget): boolean {
  if (me.natGatewayId !== undefined) return route.otherTarget === me.natGatewayId;
  return route.instanceId === me.instanceId || route.eniId === me.eniId;
}

/** How a route's target reads in a log line or `status`. */
export function targetText(route: RouteEntry | undefined): string | undefined {
  if (!route) return undefined;
  return route.instanceId ?? route.eniId ?? route.otherTarget ?? "none";
}
