import type { RouteConfig } from "../config/index.js";
import type { KvEntry } from "../consul/index.js";
import type { ActionKind, KeyView, RouteLocal, RouteView } from "./decide.js";
import type { ElectionPolicy, HealthView } from "./deps.js";
import type { ReleaseReason } from "./events.js";
import { parseHolder, routeOfKey } from "./holder.js";

/** The routes' keys in one snapshot of the routes prefix, by route name. */
export function keyViews(cluster: string, entries: readonly KvEntry[]): Map<string, KeyView> {
  const keys = new Map<string, KeyView>();
  for (const e of entries) {
    const route = routeOfKey(cluster, e.key);
    const holder = parseHolder(e.value);
    if (route) keys.set(route, { lockIndex: e.lockIndex, modifyIndex: e.modifyIndex, ...(e.session ? { session: e.session } : {}), ...(holder ? { holder } : {}) });
  }
  return keys;
}

/** Everything the loop reads about one route at one cycle. */
export interface RouteViewInput {
  route: RouteConfig;
  now: number;
  local: RouteLocal;
  snapshot: { keys: ReadonlyMap<string, KeyView>; index: number } | undefined;
  session: string | undefined;
  sessions: { leaseDeadline(session: string): number };
  health: HealthView;
  policy: ElectionPolicy | undefined;
  draining: ReleaseReason | undefined;
  /** A reload removed the route: it is released (reason "removed"). */
  retiring: boolean;
  inFlight: ActionKind | undefined;
  reconcileDue: boolean;
}

/** The whole current state of one route, as decide() reads it. */
export function routeView(input: RouteViewInput): RouteView {
  const { route, now, local, snapshot, session, policy, draining, inFlight } = input;
  const mayContend = policy ? policy.mayContend(route, { now, ...(local.freeSince !== undefined ? { freeSince: local.freeSince } : {}) }) : true;
  const handOver = local.held && !draining ? policy?.handOver(route, now) : undefined;
  return {
    route: route.name,
    now,
    key: snapshot ? (snapshot.keys.get(route.name) ?? null) : undefined,
    snapshotIndex: snapshot?.index ?? 0,
    ...(session ? { session } : {}),
    leaseOk: !!session && now <= input.sessions.leaseDeadline(session),
    healthy: input.health.allPassing(route.checks),
    ...(draining ? { draining } : input.retiring ? { draining: "removed" as const } : {}),
    mayContend,
    ...(handOver ? { handOver } : {}),
    ...(inFlight ? { inFlight } : {}),
    reconcileDue: input.reconcileDue,
  };
}
