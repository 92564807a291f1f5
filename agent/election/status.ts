import type { PeerCutOff } from "../peers/verdict.js";
import type { KeyView, RouteLocal } from "./decide.js";
import type { HolderInfo } from "./events.js";

export type RoutePhase = "idle" | "contending" | "holding" | "releasing" | "blocked";

/** One route as this node sees it, for status, metrics and tests. */
export interface RouteStatus {
  readonly route: string;
  readonly phase: RoutePhase;
  readonly eligible: boolean;
  readonly held?: { readonly session: string; readonly lockIndex: number };
  readonly holder?: HolderInfo;
  readonly lockIndex?: number;
  readonly blocked?: { readonly reason: string; readonly untilMs: number };
  readonly lastWriteError?: string;
  /** A held route whose key this node cannot confirm (Consul silent or unreachable, or cut off from its peers): why. */
  readonly unconfirmed?: string;
  /** A route this node cannot take now for want of a Consul session: why (Consul's refusal, e.g. a critical check). */
  readonly noSession?: string;
  /** The sentence of the last cycle. */
  readonly reason: string;
}

/** A route's status from its local facts and the latest key view (pure). */
export function routeStatus(route: string, local: RouteLocal, key: KeyView | null | undefined, wanted: boolean, reason: string, now: number, releasing: boolean): RouteStatus {
  const blocked = local.blocked && now < local.blocked.until ? { reason: local.blocked.reason, untilMs: local.blocked.until - now } : undefined;
  const phase: RoutePhase = local.held ? (releasing ? "releasing" : "holding") : blocked ? "blocked" : wanted ? "contending" : "idle";
  return {
    route,
    phase,
    eligible: wanted,
    ...(local.held ? { held: { session: local.held.session, lockIndex: local.held.lockIndex } } : {}),
    ...(key?.session && key.holder ? { holder: key.holder } : {}),
    ...(key ? { lockIndex: local.held?.lockIndex ?? key.lockIndex } : {}),
    ...(blocked ? { blocked } : {}),
    ...(local.lastWriteError ? { lastWriteError: local.lastWriteError } : {}),
    reason,
  };
}

/** One line for the Consul UI: what is held, and which routes are given up and why. */
export function summaryLine(held: readonly string[], states: readonly RouteStatus[], draining: string | undefined, reloadNote: string | undefined): string {
  const blocked = states.filter((s) => s.blocked).map((s) => `${s.route} given up for ${Math.round((s.blocked?.untilMs ?? 0) / 1000)} s: ${s.blocked?.reason}`);
  return [`holds ${held.length ? held.join(", ") : "no routes"}`, ...(draining ? [`draining (${draining})`] : []), ...blocked, ...(reloadNote ? [reloadNote] : [])].join("; ");
}

const seconds = (ms: number) => (ms / 1000).toFixed(1);

/**
 * Why this node cannot vouch for the keys it holds, if it cannot: its watch on the routes
 * prefix fails (Consul unreachable); it hears too few peers to be with a majority, which may be
 * destroying its sessions (and, once it hears them again, until Consul answers: the answer in
 * flight may predate the eviction); or its watch has had no answer for longer than a blocking
 * query can last (the wait, Consul's jitter of up to wait/16, and 1 s). Cut off from Consul, a node
 * cannot learn that its session was invalidated and a peer took the route, so /status must
 * not keep saying "holding" as a fact.
 */
export function unconfirmedReason(args: { now: number; answeredAt: number; failingSince?: number; watchWaitMs: number; cutOff?: PeerCutOff }): string | undefined {
  const { now, answeredAt, failingSince, watchWaitMs, cutOff } = args;
  if (failingSince !== undefined) return `Consul unreachable for ${seconds(now - failingSince)} s (last answer ${seconds(now - answeredAt)} s ago): this node may have lost the key`;
  if (cutOff && cutOff.until === undefined) return `hears ${cutOff.heard} of ${cutOff.peers} peers for ${seconds(now - cutOff.since)} s: a majority may have taken the key`;
  if (cutOff?.until !== undefined && cutOff.until > answeredAt) return `was cut off from its peers for ${seconds(cutOff.until - cutOff.since)} s; no answer from Consul since: this node may have lost the key`;
  if (now - answeredAt > (watchWaitMs * 17) / 16 + 1000) return `no answer from Consul for ${seconds(now - answeredAt)} s: this node may have lost the key`;
  return undefined;
}
