import type { Action, KeyView, RouteLocal } from "./decide.js";
import { LOCK_DELAY_RETRY_MAX_MS, LOCK_DELAY_RETRY_MIN_MS, UNKNOWN_RETRY_MS } from "./decide.js";
import type { ElectionEvent } from "./events.js";

/**
 * What the executor learned from one action, folded into the route's local facts by a pure
 * function. Every outcome is ok, refused or unknown; "unknown" changes nothing but timing:
 * the next snapshot of the key tells what really happened.
 */
export type Outcome =
  | { readonly kind: "acquire"; readonly result: "acquired"; readonly lockIndex: number; readonly modifyIndex: number }
  | { readonly kind: "acquire"; readonly result: "heldByOther" | "lockDelay" | "unknown" | "sessionInvalid"; readonly detail?: string }
  | { readonly kind: "release"; readonly result: "released" | "notHeld" | "unknown"; readonly detail?: string; readonly answer?: KeyView }
  | { readonly kind: "write"; readonly result: "written"; readonly action: string; readonly tables: readonly string[]; readonly ms: number }
  | { readonly kind: "write"; readonly result: "transient" | "fatal" | "gateClosed" | "cancelled"; readonly detail: string };

/**
 * A failed route write is retried after 0.5–1 s, then 0.75–1.5 s (jittered): a failover write
 * lands within about 1.5 s of the end of an EC2 fault. The per-route retry stays under EC2's
 * mutating-call refill rate for a few dozen failing routes; throttled attempts back off inside
 * the write itself.
 */
export const WRITE_RETRY_FIRST_MS = 1000;
export const WRITE_RETRY_MAX_MS = 1500;
/** Writes EC2 refuses for good (permission, invalid parameter) before the holder gives the route up. */
export const FATAL_WRITE_LIMIT = 3;
/** Ineligibility after giving a route up for refused writes: doubles per repeat, up to the max. */
export const BLOCK_FIRST_MS = 60_000;
export const BLOCK_MAX_MS = 600_000;
/** A release whose answer was lost is retried (the next snapshot shows the key still ours). */
export const RELEASE_RETRY_FIRST_MS = 200;
export const RELEASE_RETRY_MAX_MS = 2000;

export interface Applied {
  readonly local: RouteLocal;
  readonly events: readonly ElectionEvent[];
  /** The release is confirmed: the caller may record a voluntary handover. */
  readonly releasedFor?: Extract<Action, { kind: "release" }>["reason"];
}

function jittered(ms: number, random: () => number): number {
  return Math.round(ms / 2 + (random() * ms) / 2);
}

/** After the end of lock-delay computed from when the key was seen free, for timer slack. */
export const LOCK_DELAY_END_MARGIN_MS = 10;

/**
 * When to try again an acquire Consul refused for lock-delay. Consul sends no event when it
 * ends, but it started no later than when this node saw the key free, so an attempt at
 * freeSince + lockDelay wins it at once instead of up to a retry window later. The jittered
 * window stays for what that misses: a previous holder whose session has a longer lock-delay.
 */
export function lockDelayRetryAt(local: RouteLocal, now: number, random: () => number, lockDelayMs: number): number {
  const jittered = now + LOCK_DELAY_RETRY_MIN_MS + Math.floor(random() * (LOCK_DELAY_RETRY_MAX_MS - LOCK_DELAY_RETRY_MIN_MS));
  if (local.freeSince === undefined) return jittered;
  const end = local.freeSince + lockDelayMs + LOCK_DELAY_END_MARGIN_MS;
  return end > now && end < jittered ? end : jittered;
}

export function applyOutcome(local: RouteLocal, action: Action, outcome: Outcome, now: number, random: () => number, lockDelayMs: number): Applied {
  switch (outcome.kind) {
    case "acquire": {
      if (action.kind !== "acquire") return { local, events: [] };
      switch (outcome.result) {
        case "acquired":
          // The snapshot may lag Consul's answer: decide() trusts the answer until a newer snapshot.
          return { local: { ...local, answer: { session: action.session, lockIndex: outcome.lockIndex, modifyIndex: outcome.modifyIndex } }, events: [] };
        case "lockDelay":
          return { local: { ...local, retryAt: lockDelayRetryAt(local, now, random, lockDelayMs) }, events: [] };
        case "unknown":
        case "sessionInvalid":
          return { local: { ...local, retryAt: now + UNKNOWN_RETRY_MS }, events: [] };
        case "heldByOther":
          return { local, events: [] };
      }
      return { local, events: [] };
    }
    case "release": {
      if (action.kind !== "release") return { local, events: [] };
      if (outcome.result === "unknown") {
        const failures = local.releaseFailures + 1;
        return { local: { ...local, releaseFailures: failures, releaseRetryAt: now + Math.min(RELEASE_RETRY_MAX_MS, RELEASE_RETRY_FIRST_MS * 2 ** (failures - 1)) }, events: [] };
      }
      const { held: _held, writeDueAt: _due, answer: _answer, ...rest } = local;
      const events: ElectionEvent[] = [{ type: "released", route: action.route, reason: action.reason, heldMs: Math.round(now - action.acquiredAt), at: now }];
      // The key as read back after the release outranks snapshots read before it.
      const after = outcome.answer ? { answer: outcome.answer } : {};
      // Without that read-back, the released hold itself tells a stale snapshot from a new acquire (one "released" per release).
      return { local: { ...rest, ...after, released: { session: action.session, lockIndex: action.lockIndex }, reassertAt: [], releaseFailures: 0, releaseRetryAt: 0, writeFailures: 0, fatalWrites: 0 }, events, releasedFor: action.reason };
    }
    case "write": {
      if (action.kind !== "write") return { local, events: [] };
      switch (outcome.result) {
        case "written": {
          const { writeDueAt: _due, lastWriteError: _err, ...rest } = local;
          const events: ElectionEvent[] =
            outcome.action === "unchanged" ? [] : [{ type: "routeWritten", route: action.route, action: outcome.action, tables: [...outcome.tables], ms: outcome.ms, at: now }];
          return { local: { ...rest, writeFailures: 0, fatalWrites: 0 }, events };
        }
        case "transient": {
          const failures = local.writeFailures + 1;
          const delay = jittered(Math.min(WRITE_RETRY_MAX_MS, WRITE_RETRY_FIRST_MS * 2 ** (failures - 1)), random);
          return { local: { ...local, writeFailures: failures, writeDueAt: now + delay, lastWriteError: outcome.detail }, events: [{ type: "writeFailed", route: action.route, fatal: false, reason: outcome.detail, retryInMs: delay, at: now }] };
        }
        case "fatal": {
          const fatal = local.fatalWrites + 1;
          if (fatal < FATAL_WRITE_LIMIT) {
            return { local: { ...local, fatalWrites: fatal, writeDueAt: now + WRITE_RETRY_FIRST_MS, lastWriteError: outcome.detail }, events: [{ type: "writeFailed", route: action.route, fatal: true, reason: outcome.detail, retryInMs: WRITE_RETRY_FIRST_MS, at: now }] };
          }
          const count = (local.blocked?.count ?? 0) + 1;
          const blockMs = Math.min(BLOCK_MAX_MS, BLOCK_FIRST_MS * 2 ** (count - 1));
          const reason = `${fatal} route writes refused: ${outcome.detail}`;
          return {
            local: { ...local, fatalWrites: 0, lastWriteError: outcome.detail, blocked: { reason, until: now + blockMs, count } },
            events: [{ type: "blocked", route: action.route, reason, forMs: blockMs, at: now }],
          };
        }
        case "gateClosed":
          return { local: { ...local, writeDueAt: now + 500, lastWriteError: outcome.detail }, events: [] };
        case "cancelled":
          return { local: { ...local, writeDueAt: now }, events: [] };
      }
    }
  }
  return { local, events: [] };
}
