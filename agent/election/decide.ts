import type { ElectionEvent, HolderInfo, LossReason, ReleaseReason } from "./events.js";

/**
 * The per-route election decision, level-triggered: every cycle looks at the whole current
 * state of one route (the latest snapshot of its Consul key, this node's session, health,
 * policy, drain, what is in flight) and returns the actions that bring the route where it
 * should be, with the reason. Nothing here remembers a change it might have missed: "the key
 * is mine and I should not hold it" is a release every cycle until Consul says otherwise;
 * "the key is mine and I should hold it" is adopted every cycle. Pure: no clock, no I/O.
 */

/** What the latest snapshot shows for the route's key. */
export interface KeyView {
  readonly session?: string;
  readonly lockIndex: number;
  readonly modifyIndex: number;
  readonly holder?: HolderInfo;
}

export type ActionKind = "acquire" | "release" | "write";

/** Everything the decision looks at, read fresh each cycle. */
export interface RouteView {
  readonly route: string;
  readonly now: number;
  /** undefined until the first snapshot; null when the key does not exist. */
  readonly key: KeyView | null | undefined;
  /** X-Consul-Index of the snapshot the key view comes from. */
  readonly snapshotIndex: number;
  /** The live session of the route's check set (its owner's current()), if any. */
  readonly session?: string;
  /** Inside the local lease of that session: writes may start. */
  readonly leaseOk: boolean;
  /** The route's checks pass (rise reached, not fallen). */
  readonly healthy: boolean;
  /** Draining (operator, lifecycle, shutdown): hold nothing. */
  readonly draining?: ReleaseReason;
  /** The failover policy lets this node contend now. */
  readonly mayContend: boolean;
  /** The failover policy wants the holder to hand the route over. */
  readonly handOver?: "failback" | "handover";
  /** The action of this route the executor is running, if any. */
  readonly inFlight?: ActionKind;
  /** The holder reconciles now (the cluster-wide reconcile tick came). */
  readonly reconcileDue: boolean;
}

/** Per-route facts only the loop writes. */
export interface RouteLocal {
  /** Consul's answer to this node's acquire: newer than any snapshot read before it landed. */
  readonly answer?: KeyView;
  /** The key as this node holds it (adopted from Consul's answer or snapshot). */
  readonly held?: { readonly session: string; readonly lockIndex: number; readonly modifyIndex: number; readonly acquiredAt: number };
  readonly acquireAttempt: number;
  /** No acquire before this time (lock-delay retry, back-off after an unknown outcome). */
  readonly retryAt: number;
  /** When the key was first seen free: failover time is measured from here. */
  readonly freeSince?: number;
  /** The session last seen on the key (null: free), for leaderChanged. */
  readonly seenSession?: string | null;
  /** The last other instance seen holding the key, for the acquired event. */
  readonly previousHolder?: string;
  /** Re-asserts of a new holder: overwrite a late write of the previous holder. */
  readonly reassertAt: readonly number[];
  /** The next route write is due at this time (first write, retry after a failure). */
  readonly writeDueAt?: number;
  readonly writeFailures: number;
  readonly fatalWrites: number;
  readonly lastWriteError?: string;
  /** Ineligible for this route until `until` (writes refused for good). */
  readonly blocked?: { readonly reason: string; readonly until: number; readonly count: number };
  readonly releaseRetryAt: number;
  readonly releaseFailures: number;
  /** The hold Consul confirmed released: a snapshot read before that still shows it, and it is not ours again. */
  readonly released?: { readonly session: string; readonly lockIndex: number };
}

export type Action =
  | { readonly kind: "acquire"; readonly route: string; readonly session: string; readonly attempt: number; readonly expectedLockIndex: number }
  | { readonly kind: "release"; readonly route: string; readonly session: string; readonly lockIndex: number; readonly acquiredAt: number; readonly reason: ReleaseReason }
  | {
      readonly kind: "write";
      readonly route: string;
      readonly session: string;
      readonly lockIndex: number;
      readonly why: "acquired" | "reassert" | "reconcile" | "retry";
      readonly force: boolean;
      /** The first write (or its retry) of a hold taken over from this instance (per the key): the route almost surely points there. */
      readonly takeoverFrom?: string;
    };

export interface Decision {
  readonly local: RouteLocal;
  readonly actions: readonly Action[];
  readonly events: readonly ElectionEvent[];
  /** Stop the write in flight before it sends anything more (leadership lost or unwanted). */
  readonly cancelWrite: boolean;
  /** One sentence: the log line of this cycle and the test oracle. */
  readonly reason: string;
}

/** Retry window after an acquire refused by lock-delay: Consul sends no event when it ends. */
export const LOCK_DELAY_RETRY_MIN_MS = 100;
export const LOCK_DELAY_RETRY_MAX_MS = 200;
/** Back-off after an acquire whose outcome is unknown (the next snapshot tells what happened). */
export const UNKNOWN_RETRY_MS = 1000;

export function initialLocal(): RouteLocal {
  return { acquireAttempt: 0, retryAt: 0, reassertAt: [], writeFailures: 0, fatalWrites: 0, releaseRetryAt: 0, releaseFailures: 0 };
}

/** Re-assert at a third and two thirds of one lock-delay, and at its end: all inside the window. */
export function reassertSchedule(now: number, lockDelayMs: number): number[] {
  return [now + lockDelayMs / 3, now + (2 * lockDelayMs) / 3, now + lockDelayMs].map(Math.round);
}

/** Why this node should not hold the route now, or undefined when it should. */
export function releaseReasonOf(view: RouteView, local: RouteLocal): ReleaseReason | undefined {
  if (view.draining) return view.draining;
  if (!view.healthy) return "checkFailed";
  if (local.blocked && view.now < local.blocked.until) return "writeRefused";
  if (view.handOver) return view.handOver;
  return undefined;
}

function lossReason(key: KeyView | null): LossReason {
  if (key === null) return "keyDeleted";
  return key.session ? "keyTaken" : "sessionInvalidated";
}

export function decide(view: RouteView, local: RouteLocal, lockDelayMs: number): Decision {
  const { route, now } = view;
  const events: ElectionEvent[] = [];
  if (view.key === undefined) return { local, actions: [], events, cancelWrite: false, reason: "waiting for the first read of the key" };

  let next: RouteLocal = local;
  // A snapshot read before our own acquire landed says nothing about it: Consul's answer is newer.
  let key: KeyView | null = view.key;
  if (next.answer && view.snapshotIndex < next.answer.modifyIndex) key = next.answer;
  else if (next.answer) next = withoutAnswer(next);
  const session = key?.session ?? null;
  if (next.seenSession === undefined || next.seenSession !== session) {
    events.push({ type: "leaderChanged", route, at: now, ...(key?.session && key.holder ? { holder: key.holder } : {}) });
    next = { ...next, seenSession: session };
  }
  const held = next.held;
  const releasedHold = !!key?.session && key.session === next.released?.session && key.lockIndex === next.released.lockIndex;
  const mine = !!key?.session && !releasedHold && (key.session === view.session || key.session === held?.session);

  // A released key keeps its last holder's JSON: that instance is the previous holder too.
  if (!mine && key?.holder?.instanceId) next = { ...next, previousHolder: key.holder.instanceId };
  if (!mine && (!key || !key.session)) next = next.freeSince === undefined ? { ...next, freeSince: now } : next;
  else if (next.freeSince !== undefined) next = withoutFreeSince(next);

  if (!mine) {
    if (held) {
      const reason = lossReason(key);
      events.push({ type: "lost", route, reason, at: now, ...(key?.holder?.instanceId && key.session ? { newHolder: key.holder.instanceId } : {}) });
      next = withoutHold(next);
      return { local: next, actions: [], events, cancelWrite: view.inFlight === "write", reason: `lost the key (${reason}): writes stopped` };
    }
    if (view.inFlight) return { local: next, actions: [], events, cancelWrite: false, reason: `${view.inFlight} in flight` };
    if (key?.session) return { local: next, actions: [], events, cancelWrite: false, reason: `held by ${key.holder?.instanceId ?? key.session}` };
    const notWanted = releaseReasonOf(view, next) ?? (!view.mayContend ? "policy" : undefined) ?? (!view.session ? "no session" : undefined);
    if (notWanted) return { local: next, actions: [], events, cancelWrite: false, reason: `free; not contending (${notWanted})` };
    if (now < next.retryAt) return { local: next, actions: [], events, cancelWrite: false, reason: "free; acquire retry pending" };
    const attempt = next.acquireAttempt + 1;
    next = { ...next, acquireAttempt: attempt };
    const action: Action = { kind: "acquire", route, session: view.session as string, attempt, expectedLockIndex: (key?.lockIndex ?? 0) + 1 };
    return { local: next, actions: [action], events, cancelWrite: false, reason: `free; acquiring (attempt ${attempt})` };
  }

  // The key is this node's (per Consul, or per Consul's own answer newer than the snapshot).
  const liveKey = key as KeyView;
  const unwanted = releaseReasonOf(view, next) ?? (liveKey.session !== view.session ? "ineligible" : undefined);
  if (unwanted) {
    const adopted = next.held ?? { session: liveKey.session as string, lockIndex: liveKey.lockIndex, modifyIndex: liveKey.modifyIndex, acquiredAt: now };
    next = { ...next, held: adopted, reassertAt: [] };
    if (view.inFlight) return { local: next, actions: [], events, cancelWrite: view.inFlight === "write", reason: `releasing (${unwanted}) after the ${view.inFlight} in flight` };
    if (now < next.releaseRetryAt) return { local: next, actions: [], events, cancelWrite: false, reason: `release (${unwanted}) retry pending` };
    const action: Action = { kind: "release", route, session: adopted.session, lockIndex: adopted.lockIndex, acquiredAt: adopted.acquiredAt, reason: unwanted };
    return { local: next, actions: [action], events, cancelWrite: false, reason: `releasing (${unwanted})` };
  }

  if (!held || held.session !== liveKey.session || held.lockIndex !== liveKey.lockIndex) {
    events.push({ type: "acquired", route, lockIndex: liveKey.lockIndex, waitedMs: local.freeSince !== undefined ? Math.round(now - local.freeSince) : 0, at: now, ...(next.previousHolder ? { previousHolder: next.previousHolder } : {}) });
    next = {
      ...next,
      held: { session: liveKey.session as string, lockIndex: liveKey.lockIndex, modifyIndex: liveKey.modifyIndex, acquiredAt: now },
      reassertAt: reassertSchedule(now, lockDelayMs),
      writeDueAt: now,
      writeFailures: 0,
      fatalWrites: 0,
    };
  }
  const h = next.held!;
  if (view.inFlight) return { local: next, actions: [], events, cancelWrite: false, reason: `holding; ${view.inFlight} in flight` };
  if (!view.leaseOk) return { local: next, actions: [], events, cancelWrite: false, reason: "holding; lease deadline passed: not writing until the session is renewed" };
  const reassert = next.reassertAt.length > 0 && (next.reassertAt[0] as number) <= now;
  const due = next.writeDueAt !== undefined && next.writeDueAt <= now;
  if (!reassert && !due && !view.reconcileDue) return { local: next, actions: [], events, cancelWrite: false, reason: "holding" };
  const why = reassert ? "reassert" : due ? (next.writeFailures > 0 || next.fatalWrites > 0 ? "retry" : h.acquiredAt === now ? "acquired" : "retry") : "reconcile";
  if (reassert) next = { ...next, reassertAt: next.reassertAt.filter((t) => t > now) };
  // The hold's first write (or its retry), whatever the cycle it comes in: the acquire's
  // answer often lands after the snapshot that showed the key ours, and its write is then a "retry".
  const takeover = due && !reassert && next.previousHolder ? { takeoverFrom: next.previousHolder } : {};
  const action: Action = { kind: "write", route, session: h.session, lockIndex: h.lockIndex, why, force: reassert, ...takeover };
  return { local: next, actions: [action], events, cancelWrite: false, reason: `holding; writing (${why})` };
}

function withoutHold(local: RouteLocal): RouteLocal {
  const { held: _held, writeDueAt: _due, ...rest } = local;
  return { ...rest, reassertAt: [], writeFailures: 0, fatalWrites: 0 };
}

function withoutAnswer(local: RouteLocal): RouteLocal {
  const { answer: _a, ...rest } = local;
  return rest;
}

function withoutFreeSince(local: RouteLocal): RouteLocal {
  const { freeSince: _f, ...rest } = local;
  return rest;
}

/** The earliest time a cycle could decide something new for this route without any wake-up. */
export function nextDue(local: RouteLocal): number | undefined {
  const times = [local.held ? local.reassertAt[0] : undefined, local.held ? local.writeDueAt : undefined, local.retryAt || undefined, local.releaseRetryAt || undefined, local.blocked?.until];
  const defined = times.filter((t): t is number => t !== undefined);
  return defined.length ? Math.min(...defined) : undefined;
}
