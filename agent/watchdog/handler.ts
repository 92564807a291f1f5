/**
 * The routeleader watchdog, an AWS Lambda function (the stack deploys it; `npm run
 * build:watchdog` bundles this file). Invoked by EventBridge for EC2 instance state changes
 * (stopping, stopped, shutting-down, terminated) and on a schedule, it reads the managed
 * route tables and repoints a route at its fallback when its target instance is not running
 * or the route is a blackhole, and only after the target has stayed dead for a grace period
 * (read again after it): live agents move a dead holder's routes within seconds, so the
 * watchdog acts only when none did. It never writes a route whose target instance is pending
 * or running. Every move is one EMF metric line and one EventBridge event.
 */
import { DescribeInstancesCommand, DescribeRouteTablesCommand, EC2Client, ReplaceRouteCommand, type Filter, type RouteTable } from "@aws-sdk/client-ec2";
import { EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import { emfLine, type EmfRecord } from "../observe/emf-format.js";
import { DEAD_STATES, decide, fallbackId, type Decision, type Fallback, type RouteFacts } from "./decide.js";
import { EVENT_DETAIL_TYPE, EVENT_SOURCE, FALLBACK_TAG_PREFIX, fallbackFor, settingsFromEnv, type WatchdogSettings } from "./settings.js";

/** What EventBridge hands the function: a state-change notification or a scheduled event. */
export interface WatchdogEvent {
  "detail-type"?: string;
  source?: string;
  time?: string;
  detail?: { "instance-id"?: string; state?: string } & Record<string, unknown>;
}

export interface RouteOutcome {
  tableId: string;
  destination: string;
  decision: Decision;
  /** Set when the route was repointed (or the write failed). */
  moved?: { from: string; to: string; ms: number };
  error?: string;
}

export interface WatchdogResult {
  trigger: string;
  routes: RouteOutcome[];
  moved: number;
  failed: number;
}

export interface WatchdogDeps {
  settings: WatchdogSettings;
  ec2: EC2Client;
  events?: EventBridgeClient;
  /** Where EMF and log lines go (default: process.stdout, unprefixed, which Lambda's log capture keeps as is). */
  write?: (line: string) => void;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

interface Snapshot {
  facts: RouteFacts[];
  badTags: string[];
}

function targetOf(route: { InstanceId?: string; NetworkInterfaceId?: string; NatGatewayId?: string; GatewayId?: string; TransitGatewayId?: string; VpcPeeringConnectionId?: string; EgressOnlyInternetGatewayId?: string; LocalGatewayId?: string; CarrierGatewayId?: string }): RouteFacts["target"] {
  const other = route.TransitGatewayId ?? route.VpcPeeringConnectionId ?? route.EgressOnlyInternetGatewayId ?? route.LocalGatewayId ?? route.CarrierGatewayId;
  return {
    ...(route.InstanceId ? { instanceId: route.InstanceId } : {}),
    ...(route.NetworkInterfaceId ? { networkInterfaceId: route.NetworkInterfaceId } : {}),
    ...(route.NatGatewayId ? { natGatewayId: route.NatGatewayId } : {}),
    ...(route.GatewayId ? { gatewayId: route.GatewayId } : {}),
    ...(other ? { other } : {}),
  };
}

async function readTables(ec2: EC2Client, s: WatchdogSettings): Promise<RouteTable[]> {
  const filters: Filter[] = [];
  if (s.vpcId) filters.push({ Name: "vpc-id", Values: [s.vpcId] });
  if (s.tableIds.length) filters.push({ Name: "route-table-id", Values: s.tableIds });
  else if (s.tableTag) filters.push({ Name: `tag:${s.tableTag.key}`, Values: [s.tableTag.value] });
  const tables: RouteTable[] = [];
  let next: string | undefined;
  do {
    const out = await ec2.send(new DescribeRouteTablesCommand({ Filters: filters, ...(next ? { NextToken: next } : {}) }));
    tables.push(...(out.RouteTables ?? []));
    next = out.NextToken;
  } while (next);
  // The filters are the selection; this is a second guard, so a filter EC2 ignored selects nothing more.
  const tag = s.tableTag;
  const selected = (t: RouteTable) => (s.tableIds.length ? s.tableIds.includes(t.RouteTableId ?? "") : !!tag && !!t.Tags?.some((x) => x.Key === tag.key && x.Value === tag.value));
  return tables.filter((t) => selected(t) && (!s.vpcId || t.VpcId === s.vpcId));
}

async function instanceStates(ec2: EC2Client, ids: string[]): Promise<Map<string, string>> {
  const states = new Map<string, string>();
  if (!ids.length) return states;
  let next: string | undefined;
  do {
    // A filter, not InstanceIds: an id EC2 forgot must not fail the whole call.
    const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: "instance-id", Values: ids }], ...(next ? { NextToken: next } : {}) }));
    for (const i of (out.Reservations ?? []).flatMap((r) => r.Instances ?? [])) if (i.InstanceId) states.set(i.InstanceId, i.State?.Name ?? "unknown");
    next = out.NextToken;
  } while (next);
  return states;
}

async function snapshot(ec2: EC2Client, s: WatchdogSettings): Promise<Snapshot> {
  const tables = await readTables(ec2, s);
  const facts: RouteFacts[] = [];
  const badTags: string[] = [];
  for (const t of tables) {
    const tableId = t.RouteTableId ?? "";
    const tags = Object.fromEntries((t.Tags ?? []).map((tag) => [tag.Key ?? "", tag.Value ?? ""]));
    for (const [key, value] of Object.entries(tags)) if (key.startsWith(FALLBACK_TAG_PREFIX) && !/^(nat|eni)-[0-9a-f]{8,17}$/.test(value.trim())) badTags.push(`${tableId} ${key}=${value}`);
    for (const destination of s.destinations) {
      const route = (t.Routes ?? []).find((r) => r.DestinationCidrBlock === destination || r.DestinationIpv6CidrBlock === destination);
      const fallback = fallbackFor(s, tableId, tags, destination);
      facts.push({
        tableId,
        destination,
        present: !!route,
        ...(route?.State ? { state: route.State } : {}),
        target: route ? targetOf(route) : {},
        ...(fallback ? { fallback } : {}),
      });
    }
  }
  const states = await instanceStates(ec2, [...new Set(facts.map((f) => f.target.instanceId).filter((id): id is string => !!id))]);
  for (const f of facts) if (f.target.instanceId) f.instanceState = states.get(f.target.instanceId) ?? "absent";
  return { facts, badTags };
}

const keyOf = (f: { tableId: string; destination: string }) => `${f.tableId} ${f.destination}`;

function describeTrigger(event: WatchdogEvent): { name: string; deadInstance?: string } {
  const type = event["detail-type"] ?? "";
  if (type === "EC2 Instance State-change Notification") {
    const id = event.detail?.["instance-id"];
    const state = event.detail?.state ?? "";
    return { name: `instance ${id ?? "?"} ${state}`, ...(id && DEAD_STATES.has(state) ? { deadInstance: id } : {}) };
  }
  if (type === "Scheduled Event") return { name: "schedule" };
  return { name: type || "direct invocation" };
}

export function createWatchdog(deps: WatchdogDeps): (event: WatchdogEvent) => Promise<WatchdogResult> {
  const s = deps.settings;
  const write = deps.write ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const log = (level: "info" | "warn" | "error", msg: string, fields: Record<string, unknown> = {}) => write(JSON.stringify({ level, time: new Date(now()).toISOString(), cluster: s.cluster, msg, ...fields }));

  /** One EMF line in the watchdog's namespace, dimension Cluster, stamped now. */
  const metricLine = (metrics: EmfRecord["metrics"], properties: EmfRecord["properties"]) => emfLine({ namespace: s.namespace, timestamp: now(), dimensions: { Cluster: s.cluster }, metrics, properties });

  async function repoint(f: RouteFacts, to: Fallback): Promise<number> {
    const started = now();
    const ipv6 = f.destination.includes(":");
    await deps.ec2.send(
      new ReplaceRouteCommand({
        RouteTableId: f.tableId,
        ...(ipv6 ? { DestinationIpv6CidrBlock: f.destination } : { DestinationCidrBlock: f.destination }),
        ...("natGatewayId" in to ? { NatGatewayId: to.natGatewayId } : { NetworkInterfaceId: to.networkInterfaceId }),
      }),
    );
    return now() - started;
  }

  async function announce(moves: { f: RouteFacts; from: string; to: string; why: string; instanceState?: string }[], trigger: string): Promise<void> {
    if (!deps.events || !s.eventBus || !moves.length) return;
    try {
      // PutEvents takes at most 10 entries per call.
      for (let i = 0; i < moves.length; i += 10) {
        const out = await deps.events.send(
          new PutEventsCommand({
            Entries: moves.slice(i, i + 10).map((m) => ({
              EventBusName: s.eventBus,
              Source: EVENT_SOURCE,
              DetailType: EVENT_DETAIL_TYPE,
              Resources: [],
              Detail: JSON.stringify({ cluster: s.cluster, actor: "watchdog", routeTable: m.f.tableId, destination: m.f.destination, from: m.from, fromState: m.instanceState ?? m.f.state ?? null, to: m.to, reason: m.why, trigger }),
            })),
          }),
        );
        if (out.FailedEntryCount) log("error", "EventBridge refused route-moved events", { failed: out.FailedEntryCount });
      }
    } catch (err) {
      log("error", "could not send route-moved events to EventBridge", { err: (err as Error).message });
    }
  }

  return async function handle(event: WatchdogEvent): Promise<WatchdogResult> {
    const trigger = describeTrigger(event);
    let snap = await snapshot(deps.ec2, s);
    for (const bad of snap.badTags) log("warn", `fallback tag ignored: ${bad} names neither a NAT gateway (nat-…) nor a network interface (eni-…)`);
    let decisions = snap.facts.map((f) => ({ f, d: decide(f) }));
    // Candidates: routes this read would move, and a route still showing as running at the
    // instance the event says is going away (DescribeInstances can lag the notification).
    const candidates = new Set(decisions.filter(({ f, d }) => d.kind === "repoint" || (!!trigger.deadInstance && f.target.instanceId === trigger.deadInstance)).map(({ f }) => keyOf(f)));
    if (candidates.size && s.graceMs > 0) {
      log("info", `${candidates.size} route(s) at a dead target: reading again in ${Math.round(s.graceMs / 1000)} s before moving any`, { routes: [...candidates], trigger: trigger.name });
      await sleep(s.graceMs);
      snap = await snapshot(deps.ec2, s);
      decisions = snap.facts.map((f) => ({ f, d: decide(f) }));
    }
    const outcomes: RouteOutcome[] = [];
    const moves: { f: RouteFacts; from: string; to: string; why: string; instanceState?: string }[] = [];
    let failed = 0;
    for (const { f, d } of decisions) {
      const outcome: RouteOutcome = { tableId: f.tableId, destination: f.destination, decision: d };
      outcomes.push(outcome);
      if (d.kind !== "repoint") continue;
      // Only a route that was dead at both reads moves: the agents had the grace period to act.
      if (s.graceMs > 0 && !candidates.has(keyOf(f))) {
        outcome.decision = { kind: "leave", reason: "dead for less than the grace period", onFallback: false, deadTarget: true };
        continue;
      }
      const to = fallbackId(d.to);
      try {
        const ms = await repoint(f, d.to);
        outcome.moved = { from: d.from, to, ms };
        moves.push({ f, from: d.from, to, why: d.why, ...(f.instanceState ? { instanceState: f.instanceState } : {}) });
        log("warn", `${f.tableId} ${f.destination}: repointed from ${d.from} to fallback ${to} (${d.why})`, { routeTable: f.tableId, destination: f.destination, from: d.from, to, reason: d.why, ms, trigger: trigger.name });
        write(
          metricLine(
            [
              { name: "WatchdogRouteMoved", unit: "Count", value: 1 },
              { name: "WatchdogWriteLatency", unit: "Milliseconds", value: ms },
            ],
            { routeTable: f.tableId, destination: f.destination, from: d.from, to, reason: d.why },
          ),
        );
      } catch (err) {
        failed++;
        outcome.error = (err as Error).message;
        log("error", `${f.tableId} ${f.destination}: could not repoint to fallback ${to}: ${(err as Error).message}`, { routeTable: f.tableId, destination: f.destination, to });
      }
    }
    await announce(moves, trigger.name);
    // One summary line per invocation: what the alarms watch (route on fallback, dead targets).
    const onFallback = outcomes.filter((o) => o.moved || (o.decision.kind === "leave" && o.decision.onFallback)).length;
    const dead = outcomes.filter((o) => !o.moved && o.decision.kind === "leave" && o.decision.deadTarget).length + failed;
    write(
      metricLine(
        [
          { name: "WatchdogManagedRoutes", unit: "Count", value: outcomes.length },
          { name: "WatchdogRoutesOnFallback", unit: "Count", value: onFallback },
          { name: "WatchdogRoutesAtDeadTarget", unit: "Count", value: dead },
          { name: "WatchdogWriteFailures", unit: "Count", value: failed },
        ],
        { trigger: trigger.name, moved: moves.length },
      ),
    );
    return { trigger: trigger.name, routes: outcomes, moved: moves.length, failed };
  };
}

let fromEnvironment: ((event: WatchdogEvent) => Promise<WatchdogResult>) | undefined;

/** The Lambda entry point: settings from the environment, clients made once per container. */
export async function handler(event: WatchdogEvent): Promise<WatchdogResult> {
  if (!fromEnvironment) {
    const settings = settingsFromEnv(process.env);
    fromEnvironment = createWatchdog({ settings, ec2: new EC2Client({ maxAttempts: 5 }), ...(settings.eventBus ? { events: new EventBridgeClient({ maxAttempts: 5 }) } : {}) });
  }
  return fromEnvironment(event);
}
