import type { ElectionEvent, HolderInfo, LossReason, ReleaseReason } from "./events.js";

/**
 * The per-route election as a pure function: `step(state, event, now, timing)` returns the
 * new state and the commands the runner must perform. No clock, timers or I/O in here.
 */

/** What the last read of the route's key showed. */
export interface Observed {
  readonly session?: string;
  readonly lockIndex: number;
  readonly modifyIndex: number;
  readonly holder?: HolderInfo;
}

export type Phase = "idle" | "contending" | "holding" | "releasing";

export interface RouteState {
  readonly route: string;
  readonly phase: Phase;
  /** May this node contend now (checks passed rise, not draining, policy allows)? */
  readonly eligible: boolean;
  /** The live session of this route's check set, when there is one. */
  readonly session?: string;
  /** undefined until the first watch result; null when the key does not exist. */
  readonly observed?: Observed | null;
  readonly held?: { readonly session: string; readonly lockIndex: number; readonly acquiredAt: number };
  readonly acquireInFlight: boolean;
  /** No acquire before this time (lock-delay retry, or back-off after an unknown outcome). */
  readonly retryAt: number;
  /** When the key was last seen becoming free: failover time is measured from here. */
  readonly freeSince?: number;
  /** Times at which a new holder re-asserts its routes (overwrites late stray writes). */
  readonly reassertAt: readonly number[];
  /** Why the release in flight was asked for. */
  readonly releaseReason?: ReleaseReason;
}

export type ElectionInput =
  | { type: "observed"; entry: Observed | null }
  | { type: "eligibility"; eligible: boolean; session?: string }
  | { type: "acquireResult"; outcome: "acquired"; lockIndex: number }
  | { type: "acquireResult"; outcome: "heldByOther" | "lockDelay" | "unknown" | "sessionInvalid" }
  | { type: "releaseRequested"; reason: ReleaseReason }
  | { type: "releaseDone" }
  | { type: "sessionLost"; session: string }
  | { type: "tick" };

export type ElectionCommand =
  | { type: "acquire"; route: string; session: string }
  | { type: "release"; route: string; session: string; reason: ReleaseReason }
  | { type: "writeRoute"; route: string; why: "acquired" | "reassert" }
  | { type: "emit"; event: ElectionEvent };

export interface ElectionTiming {
  lockDelayMs: number;
  /** Jitter source in [0, 1): injected so tests are deterministic. */
  random: () => number;
}

/** Retry window after an acquire refused by lock-delay: Consul sends no event when it ends. */
export const LOCK_DELAY_RETRY_MIN_MS = 250;
export const LOCK_DELAY_RETRY_MAX_MS = 500;
/** Back-off after an acquire whose outcome is unknown (Consul unavailable). */
export const UNKNOWN_RETRY_MS = 1000;

export function initialState(route: string): RouteState {
  return { route, phase: "idle", eligible: false, acquireInFlight: false, retryAt: 0, reassertAt: [] };
}

/** Re-assert at a third, two thirds and just past one lock-delay after acquiring. */
export function reassertSchedule(now: number, lockDelayMs: number): number[] {
  return [now + lockDelayMs / 3, now + (2 * lockDelayMs) / 3, now + lockDelayMs + 250].map(Math.round);
}

interface Result {
  state: RouteState;
  commands: ElectionCommand[];
}

const isFree = (o: Observed | null | undefined): boolean => o === null || (o !== undefined && !o.session);

function canAcquire(s: RouteState, now: number): boolean {
  return s.phase === "contending" && s.eligible && !!s.session && !s.acquireInFlight && isFree(s.observed) && now >= s.retryAt;
}

function maybeAcquire(s: RouteState, now: number, commands: ElectionCommand[]): RouteState {
  if (!canAcquire(s, now)) return s;
  commands.push({ type: "acquire", route: s.route, session: s.session as string });
  return { ...s, acquireInFlight: true };
}

function lose(s: RouteState, reason: LossReason, now: number, commands: ElectionCommand[], newHolder?: string): RouteState {
  commands.push({ type: "emit", event: { type: "lost", route: s.route, reason, at: now, ...(newHolder ? { newHolder } : {}) } });
  const sessionGone = reason === "sessionInvalidated";
  const { held: _held, ...rest } = s;
  return {
    ...rest,
    phase: s.eligible && !sessionGone ? "contending" : "idle",
    ...(sessionGone ? { session: undefined } : {}),
    reassertAt: [],
  };
}

function onObserved(s: RouteState, entry: Observed | null, now: number, commands: ElectionCommand[], timing: ElectionTiming): RouteState {
  const before = s.observed;
  let next: RouteState = { ...s, observed: entry };
  if (before === undefined || (before?.session ?? null) !== (entry?.session ?? null)) {
    commands.push({ type: "emit", event: { type: "leaderChanged", route: s.route, at: now, ...(entry?.session && entry.holder ? { holder: entry.holder } : {}) } });
  }
  if (isFree(entry) && !isFree(before)) next = { ...next, freeSince: now };
  if (isFree(entry) && before === undefined) next = { ...next, freeSince: now };

  if (s.phase === "holding" && s.held) {
    if (entry === null) return lose(next, "keyDeleted", now, commands);
    if (entry.session !== s.held.session) return lose(next, entry.session ? "keyTaken" : "sessionInvalidated", now, commands, entry.holder?.instanceId);
    if (entry.lockIndex !== s.held.lockIndex) return lose(next, "keyTaken", now, commands, entry.holder?.instanceId);
    return next;
  }
  // An acquire whose answer was lost (timeout) may still have succeeded: the key tells.
  if (s.session && entry?.session === s.session && !s.acquireInFlight) {
    if (s.phase === "contending") return acquired(next, entry.lockIndex, now, commands, timing);
    if (s.phase === "idle") return releaseUnwanted(next, s.session, entry.lockIndex, now, commands);
  }
  return maybeAcquire(next, now, commands);
}

/**
 * The key was won after this node stopped wanting it (it turned ineligible while the acquire
 * was in flight): release it at once, or it stays held under a live session and nobody writes
 * the route (found by the load benchmark).
 */
function releaseUnwanted(s: RouteState, session: string, lockIndex: number, now: number, commands: ElectionCommand[]): RouteState {
  commands.push({ type: "emit", event: { type: "acquired", route: s.route, lockIndex, waitedMs: s.freeSince !== undefined ? now - s.freeSince : 0, at: now } });
  commands.push({ type: "release", route: s.route, session, reason: "ineligible" });
  return { ...s, phase: "releasing", acquireInFlight: false, held: { session, lockIndex, acquiredAt: now }, reassertAt: [], releaseReason: "ineligible" };
}

function acquired(s: RouteState, lockIndex: number, now: number, commands: ElectionCommand[], timing: ElectionTiming): RouteState {
  const session = s.session as string;
  commands.push({ type: "emit", event: { type: "acquired", route: s.route, lockIndex, waitedMs: s.freeSince !== undefined ? now - s.freeSince : 0, at: now } });
  commands.push({ type: "writeRoute", route: s.route, why: "acquired" });
  return {
    ...s,
    phase: "holding",
    acquireInFlight: false,
    held: { session, lockIndex, acquiredAt: now },
    reassertAt: reassertSchedule(now, timing.lockDelayMs),
  };
}

export function step(s: RouteState, input: ElectionInput, now: number, timing: ElectionTiming): Result {
  const commands: ElectionCommand[] = [];
  let state: RouteState;
  switch (input.type) {
    case "observed":
      state = onObserved(s, input.entry, now, commands, timing);
      break;

    case "eligibility": {
      const session = input.session;
      state = { ...s, eligible: input.eligible, session };
      if (s.phase === "idle" && input.eligible && session) state = { ...state, phase: "contending" };
      if (s.phase === "contending" && (!input.eligible || !session)) state = { ...state, phase: "idle" };
      state = maybeAcquire(state, now, commands);
      break;
    }

    case "acquireResult":
      state = { ...s, acquireInFlight: false };
      if (input.outcome === "acquired") {
        if (s.phase === "contending" && s.session) state = acquired(state, input.lockIndex, now, commands, timing);
        else if (s.phase === "idle" && s.session) state = releaseUnwanted(state, s.session, input.lockIndex, now, commands);
      } else if (input.outcome === "lockDelay") {
        const jitter = LOCK_DELAY_RETRY_MIN_MS + Math.floor(timing.random() * (LOCK_DELAY_RETRY_MAX_MS - LOCK_DELAY_RETRY_MIN_MS));
        state = { ...state, retryAt: now + jitter };
      } else if (input.outcome === "unknown") {
        state = { ...state, retryAt: now + UNKNOWN_RETRY_MS };
      } else if (input.outcome === "sessionInvalid") {
        state = { ...state, session: undefined, phase: "idle" };
      }
      break;

    case "releaseRequested":
      if (s.phase === "holding" && s.held) {
        commands.push({ type: "release", route: s.route, session: s.held.session, reason: input.reason });
        state = { ...s, phase: "releasing", eligible: false, reassertAt: [], releaseReason: input.reason };
      } else {
        state = { ...s, phase: s.phase === "releasing" ? "releasing" : "idle", eligible: false };
      }
      break;

    case "releaseDone": {
      if (s.phase !== "releasing" || !s.held) {
        state = s;
        break;
      }
      commands.push({ type: "emit", event: { type: "released", route: s.route, reason: s.releaseReason ?? "shutdown", heldMs: now - s.held.acquiredAt, at: now } });
      const { held: _held, releaseReason: _reason, ...rest } = s;
      state = { ...rest, phase: "idle" };
      break;
    }

    case "sessionLost":
      if (s.phase === "holding" && s.held?.session === input.session) {
        state = lose(s, "sessionInvalidated", now, commands);
      } else {
        state = s.session === input.session ? { ...s, session: undefined, phase: s.phase === "contending" ? "idle" : s.phase } : s;
      }
      break;

    case "tick": {
      state = s;
      if (s.phase === "holding" && s.reassertAt.length && (s.reassertAt[0] as number) <= now) {
        commands.push({ type: "writeRoute", route: s.route, why: "reassert" });
        state = { ...s, reassertAt: s.reassertAt.filter((t) => t > now) };
      }
      state = maybeAcquire(state, now, commands);
      break;
    }
  }
  return { state, commands };
}

/** Earliest time at which a `tick` could change something (for the runner's timer). */
export function nextWake(s: RouteState, now: number): number | undefined {
  if (s.phase === "holding" && s.reassertAt.length) return s.reassertAt[0];
  // Also when already due: the retry is taken on the next tick.
  if (s.phase === "contending" && s.eligible && s.session && !s.acquireInFlight && isFree(s.observed)) return Math.max(s.retryAt, now);
  return undefined;
}
