/**
 * The watchdog's decision for one managed route, as a pure function of what EC2 said.
 *
 * The watchdog is the safety net for when no agent can serve a route (every NAT instance dead,
 * the whole group gone): it repoints a managed route at its fallback (a NAT gateway or a
 * network interface) when the route's target instance is not running, or the route is a
 * blackhole. It never writes a route whose target instance is pending or running: a live
 * agent only ever points a route at its own running instance, so the watchdog and the agents
 * never want to write the same route at the same time (see docs/deploy.md, "The watchdog").
 */

/** Where a fallback sends traffic: ReplaceRoute's NatGatewayId or NetworkInterfaceId. */
export type Fallback = { natGatewayId: string } | { networkInterfaceId: string };

/** What a route points at, as DescribeRouteTables reports it. */
export interface RouteTarget {
  instanceId?: string;
  networkInterfaceId?: string;
  natGatewayId?: string;
  gatewayId?: string;
  /** Any other target (transit gateway, peering, …), by id. */
  other?: string;
}

export interface RouteFacts {
  tableId: string;
  destination: string;
  /** false: the table has no route to this destination. */
  present: boolean;
  /** EC2's route state: active, or blackhole when its target is gone or stopped. */
  state?: string;
  target: RouteTarget;
  /**
   * The target instance's state from DescribeInstances ("running", "stopped", …), "absent"
   * when EC2 no longer knows the instance; undefined when the route names no instance.
   */
  instanceState?: string;
  /** The route's configured fallback, if any (table tag, else the function's setting). */
  fallback?: Fallback;
}

export type LeaveReason =
  | "route missing"
  | "target running"
  | "no fallback configured"
  | "already on fallback"
  | "target is not an instance"
  | "fallback is a blackhole"
  /** Dead at the second read but not at the first: the next invocation decides. */
  | "dead for less than the grace period";

export type Decision =
  | { kind: "repoint"; to: Fallback; why: "instance stopped or terminated" | "blackhole"; from: string }
  | { kind: "leave"; reason: LeaveReason; onFallback: boolean; deadTarget: boolean };

/** Instance states in which an agent may still be (or soon be) serving: never overwritten. */
export const LIVE_STATES: ReadonlySet<string> = new Set(["pending", "running"]);
/** States the state-change rule listens for; any state not live counts as dead. */
export const DEAD_STATES: ReadonlySet<string> = new Set(["stopping", "stopped", "shutting-down", "terminated"]);

export function fallbackId(f: Fallback): string {
  return "natGatewayId" in f ? f.natGatewayId : f.networkInterfaceId;
}

/** Parses a fallback id: nat-… is a NAT gateway, eni-… a network interface; anything else undefined. */
export function parseFallback(id: string | undefined): Fallback | undefined {
  const value = id?.trim() ?? "";
  if (/^nat-[0-9a-f]{8,17}$/.test(value)) return { natGatewayId: value };
  if (/^eni-[0-9a-f]{8,17}$/.test(value)) return { networkInterfaceId: value };
  return undefined;
}

function targetId(t: RouteTarget): string | undefined {
  return t.instanceId ?? t.natGatewayId ?? t.networkInterfaceId ?? t.gatewayId ?? t.other;
}

function pointsAt(t: RouteTarget, f: Fallback): boolean {
  return "natGatewayId" in f ? t.natGatewayId === f.natGatewayId : t.networkInterfaceId === f.networkInterfaceId && !t.instanceId;
}

export function decide(r: RouteFacts): Decision {
  if (!r.present) return { kind: "leave", reason: "route missing", onFallback: false, deadTarget: false };
  const onFallback = !!r.fallback && pointsAt(r.target, r.fallback);
  const blackhole = r.state === "blackhole";
  // The one rule that overrides everything: a live target is an agent's to keep.
  if (r.target.instanceId && r.instanceState !== undefined && LIVE_STATES.has(r.instanceState)) return { kind: "leave", reason: "target running", onFallback, deadTarget: false };
  const deadInstance = !!r.target.instanceId && r.instanceState !== undefined && !LIVE_STATES.has(r.instanceState);
  const deadTarget = deadInstance || blackhole;
  if (onFallback) return { kind: "leave", reason: blackhole ? "fallback is a blackhole" : "already on fallback", onFallback, deadTarget: blackhole };
  if (!deadTarget) return { kind: "leave", reason: r.target.instanceId ? "target running" : "target is not an instance", onFallback, deadTarget };
  if (!r.fallback) return { kind: "leave", reason: "no fallback configured", onFallback, deadTarget };
  return { kind: "repoint", to: r.fallback, why: deadInstance ? "instance stopped or terminated" : "blackhole", from: targetId(r.target) ?? "unknown" };
}
