import { EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import type { ElectionEvent, ElectionListener } from "../election/events.js";

/** The agents' route-moved events: same detail-type as the watchdog's, their own source. */
export const AGENT_EVENT_SOURCE = "routeleader.agent";
export const ROUTE_MOVED = "routeleader route moved";

export interface RouteMoved {
  cluster: string;
  actor: "agent" | "agent-fallback";
  route: string;
  destination: string;
  routeTables: string[];
  /** The instance that held the route before, when known. */
  from: string | null;
  /** This instance, or the fallback target. */
  to: string;
  instanceId: string;
  az: string;
  /** How long the key was free before this acquire. */
  waitedMs: number;
}

export interface RouteEventsOptions {
  cluster: string;
  bus: string;
  identity: { instanceId: string; az: string };
  client: { region: string; endpoint?: string };
  routeOf: (name: string) => { destination: string; fallback?: string; tables: readonly string[] } | undefined;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/** The event detail of one acquire (pure). */
export function routeMovedOf(event: Extract<ElectionEvent, { type: "acquired" }>, kind: "holder" | "fallback", o: Pick<RouteEventsOptions, "cluster" | "identity" | "routeOf">): RouteMoved | undefined {
  const route = o.routeOf(event.route);
  if (!route || (kind === "fallback" && !route.fallback)) return undefined;
  return {
    cluster: o.cluster,
    actor: kind === "holder" ? "agent" : "agent-fallback",
    route: event.route,
    destination: route.destination,
    routeTables: [...route.tables],
    from: event.previousHolder ?? null,
    to: kind === "holder" ? o.identity.instanceId : (route.fallback as string),
    instanceId: o.identity.instanceId,
    az: o.identity.az,
    waitedMs: event.waitedMs,
  };
}

/**
 * Opt-in (`observe.eventbridge.enabled`): one PutEvents per route this agent takes, for itself
 * or for the fallback, sent in the background (never delaying the election); a failure is logged.
 */
export function startRouteEvents(o: RouteEventsOptions): { listener(kind: "holder" | "fallback"): ElectionListener; stop(): Promise<void> } {
  const client = new EventBridgeClient({ region: o.client.region, ...(o.client.endpoint ? { endpoint: o.client.endpoint } : {}), maxAttempts: 3, requestHandler: { requestTimeout: 3000, connectionTimeout: 2000 } });
  const pending = new Set<Promise<void>>();
  const send = async (detail: RouteMoved) => {
    const started = Date.now();
    try {
      const out = await client.send(new PutEventsCommand({ Entries: [{ EventBusName: o.bus, Source: AGENT_EVENT_SOURCE, DetailType: ROUTE_MOVED, Resources: [], Detail: JSON.stringify(detail) }] }));
      if (out.FailedEntryCount) o.log.warn({ route: detail.route, event: "routeMovedEvent", err: out.Entries?.[0]?.ErrorCode ?? "failed" }, `${detail.route}: EventBridge refused the route-moved event`);
      else o.log.info({ route: detail.route, event: "routeMovedEvent", to: detail.to, ms: Date.now() - started }, `${detail.route}: route-moved event sent`);
    } catch (err) {
      o.log.warn({ route: detail.route, event: "routeMovedEvent", err: (err as Error).message, ms: Date.now() - started }, `${detail.route}: could not send the route-moved event`);
    }
  };
  return {
    listener: (kind) => (event) => {
      if (event.type !== "acquired") return;
      const detail = routeMovedOf(event, kind, o);
      if (!detail) return;
      const task = send(detail).finally(() => pending.delete(task));
      pending.add(task);
    },
    stop: async () => {
      await Promise.race([Promise.allSettled([...pending]), new Promise((r) => setTimeout(r, 3000))]);
      client.destroy();
    },
  };
}
