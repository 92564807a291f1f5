import type { ProxyCall } from "../fault-proxy.js";
import { holderAt, type Claim } from "./systems.js";

/** Checks over one trial: the proxy's log of route writes against the systems' claims. */

const ROUTE_WRITES = new Set(["ReplaceRoute", "CreateRoute", "DeleteRoute"]);

export function routeWrites(calls: readonly ProxyCall[], tableId: string): ProxyCall[] {
  return calls.filter((c) => ROUTE_WRITES.has(c.action) && c.params.RouteTableId === tableId && c.caller !== "admin");
}

/**
 * Writes made by a host that did not hold the route at that moment: it had not acquired it,
 * had released it, or another host had acquired it since (the writer may not have known yet).
 */
export function splitBrainWrites(writes: readonly ProxyCall[], claims: readonly Claim[]): ProxyCall[] {
  const sorted = [...claims].sort((a, b) => a.t - b.t);
  return writes.filter((w) => holderAt(sorted, w.time) !== w.caller);
}

/** How often the route's target changed, following the successful writes from `initial`. */
export function routeChanges(writes: readonly ProxyCall[], initial: string | undefined): number {
  let target = initial;
  let changes = 0;
  for (const w of writes) {
    if (w.status !== 200 || w.action === "DeleteRoute") continue;
    const next = w.params.InstanceId ?? w.params.NetworkInterfaceId;
    if (next !== target) {
      changes++;
      target = next;
    }
  }
  return changes;
}

// ---------------------------------------------------------------- liveness invariants (issue #14)
//
// Checked over recorded observations (see ./recorder.ts for a recorder on a SimCluster), so a
// fault suite, the soak and a unit test on hand-written samples all use the same code.

export type InvariantName = "heldNotServed" | "holdsDisagree" | "twoWriters";

export interface Violation {
  readonly invariant: InvariantName;
  readonly route: string;
  /** The node concerned (instance id, or proxy caller for writes). */
  readonly node?: string;
  /** First and last observation time of the violation (ms since epoch). */
  readonly from: number;
  readonly to: number;
  readonly detail: string;
}

/** One look at one route as a user sees it: Consul's key, the route table, the holder's /status. */
export interface RouteSample {
  readonly t: number;
  readonly route: string;
  /** Instance id of the key's holder in Consul; undefined while the key is free. */
  readonly holder?: string;
  /** Session holding the key: a new session (or lockIndex) starts a new hold. */
  readonly session?: string;
  readonly lockIndex?: number;
  /** Where the route table points (instance, ENI or gateway id); undefined when absent. */
  readonly target?: string;
  /** Ids a table may name for the holder (its instance id and ENI); default: just `holder`. */
  readonly holderTargets?: readonly string[];
  /** The holder's own /status says it is releasing the route (phase "releasing"). */
  readonly holderReleasing?: boolean;
}

/** Merges consecutive bad observations of one subject into violations. */
function intervals<T extends { t: number }>(samples: readonly T[], bad: (s: T) => string | undefined, make: (from: T, to: T, detail: string) => Violation): Violation[] {
  const out: Violation[] = [];
  let open: { first: T; last: T; detail: string } | undefined;
  for (const s of samples) {
    const detail = bad(s);
    if (detail !== undefined) {
      if (open) open.last = s;
      else open = { first: s, last: s, detail };
    } else if (open) {
      out.push(make(open.first, open.last, open.detail));
      open = undefined;
    }
  }
  if (open) out.push(make(open.first, open.last, open.detail));
  return out;
}

/**
 * Held but not served beyond the failover bound: while a key is held, the route points at its
 * holder or the holder is releasing it, except for at most `boundMs` in a row. The bound runs
 * from the later of the hold's start (a holder, session and lockIndex first seen) and the last
 * time the route was served or being released in this hold: a route pointed away behind the
 * holder's back (drift) and repaired within the bound is fine; what a user must never see is a
 * route nobody serves for longer than that while a node keeps the lock.
 */
export function heldButNotServed(samples: readonly RouteSample[], boundMs: number): Violation[] {
  const byRoute = new Map<string, RouteSample[]>();
  for (const s of samples) {
    const list = byRoute.get(s.route);
    if (list) list.push(s);
    else byRoute.set(s.route, [s]);
  }
  const out: Violation[] = [];
  for (const [route, list] of byRoute) {
    const sorted = [...list].sort((a, b) => a.t - b.t);
    const isServed = (s: RouteSample) => s.holder !== undefined && ((s.target !== undefined && (s.holderTargets ?? [s.holder]).includes(s.target)) || s.holderReleasing === true);
    let hold: string | undefined;
    let unservedSince: number | undefined;
    const since = new Map<RouteSample, number>();
    for (const s of sorted) {
      const id = s.holder === undefined ? undefined : `${s.holder}/${s.session ?? ""}/${s.lockIndex ?? ""}`;
      if (id !== hold) unservedSince = undefined;
      hold = id;
      if (id === undefined || isServed(s)) {
        unservedSince = undefined;
        continue;
      }
      unservedSince ??= s.t;
      since.set(s, unservedSince);
    }
    const bad = (s: RouteSample): string | undefined => {
      const start = since.get(s);
      if (start === undefined || s.t - start <= boundMs) return undefined;
      return `${s.holder} holds the key but the table has pointed at ${s.target ?? "nothing"} for ${s.t - start} ms (bound ${boundMs} ms) and it is not releasing`;
    };
    out.push(...intervals(sorted, bad, (a, b, detail) => ({ invariant: "heldNotServed", route, node: a.holder as string, from: a.t, to: b.t, detail })));
  }
  return out;
}

/** Consul's holders at one time: route → holder instance id (undefined: free). */
export interface ConsulHoldersSample {
  /** When the answer arrived. */
  readonly t: number;
  /** When the request was sent (default: t): Consul's state was read somewhere in [sent, t]. */
  readonly sent?: number;
  readonly holders: Readonly<Record<string, string | undefined>>;
}

/** What one agent reported it holds (its /status, routes in phase "holding" or "releasing": keys it still holds by its own account); undefined: no answer (stopped, dead). */
export interface ReportedHoldsSample {
  /** When the answer arrived. */
  readonly t: number;
  /** When the request was sent (default: t). */
  readonly sent?: number;
  readonly node: string;
  readonly holds: readonly string[] | undefined;
  /** Each route's phase in that /status, to say what a disagreement looked like. */
  readonly phases?: Readonly<Record<string, string>>;
  /** Routes the node holds by its last knowledge but says it cannot confirm (Consul silent or unreachable): not compared. */
  readonly unconfirmed?: readonly string[];
}

/**
 * The agent's reported holds equal Consul's within `toleranceMs`: for every node and route,
 * "Consul says this node holds it" and "the node says it holds it" may disagree for at most
 * that long. Only the certain span counts: from the last answer of the first observation
 * showing it to the first request of the last one (each read was taken somewhere between its
 * request and its answer, and answers take seconds under load; the gap to the next sample is
 * not counted either). A report is evidence only for its own time: a stale one does not
 * stretch a disagreement to a later Consul view. A route the node marks unconfirmed (it is cut
 * off from Consul and says it may have lost the key) is not compared. Two
 * observations further apart than `maxGapMs` do not make one disagreement (nothing was seen
 * in between: `maxGapMs`, for a recorder that should sample far more often). A node that does
 * not answer is not compared (nothing is claimed).
 */
export function reportedHoldsDisagree(consul: readonly ConsulHoldersSample[], reports: readonly ReportedHoldsSample[], toleranceMs = 2000, maxGapMs = Number.POSITIVE_INFINITY): Violation[] {
  type Event = { t: number; consul?: ConsulHoldersSample; report?: ReportedHoldsSample };
  const events: Event[] = [...consul.map((c) => ({ t: c.t, consul: c })), ...reports.map((r) => ({ t: r.t, report: r }))].sort((a, b) => a.t - b.t);
  let view: ConsulHoldersSample | undefined;
  const latest = new Map<string, readonly string[] | undefined>();
  const phases = new Map<string, Readonly<Record<string, string>> | undefined>();
  /** node|route → the disagreement open since, and what it was. */
  const open = new Map<string, { since: number; last: number; seen: number; detail: string }>();
  const out: Violation[] = [];
  const close = (key: string) => {
    const o = open.get(key);
    open.delete(key);
    if (!o) return;
    const until = o.last;
    if (until - o.since <= toleranceMs) return;
    const [node, route] = key.split("|") as [string, string];
    out.push({ invariant: "holdsDisagree", route, node, from: o.since, to: until, detail: `${o.detail} for ${until - o.since} ms (tolerance ${toleranceMs} ms)` });
  };
  const reportOf = new Map<string, ReportedHoldsSample>();
  for (const [i, e] of events.entries()) {
    if (e.consul) view = e.consul;
    if (e.report) {
      latest.set(e.report.node, e.report.holds);
      phases.set(e.report.node, e.report.phases);
      reportOf.set(e.report.node, e.report);
    }
    // Consul's view and the reports of one observation share a time: compare once all are in.
    if (!view || events[i + 1]?.t === e.t) continue;
    for (const [node, holds] of latest) {
      const routes = new Set([...Object.keys(view.holders), ...(holds ?? [])]);
      for (const route of routes) {
        const key = `${node}|${route}`;
        if (holds === undefined || reportOf.get(node)?.unconfirmed?.includes(route)) {
          open.delete(key);
          continue;
        }
        const consulSays = view.holders[route] === node;
        const nodeSays = holds.includes(route);
        if (consulSays === nodeSays) {
          if (open.has(key)) close(key);
          continue;
        }
        const report = reportOf.get(node) as ReportedHoldsSample;
        const answered = Math.max(view.t, report.t);
        const requested = Math.min(view.sent ?? view.t, report.sent ?? report.t);
        const o = open.get(key);
        // Not observed for longer than maxGapMs (the recorder stalled): what went on in between is unknown.
        if (o && e.t - o.seen > maxGapMs) close(key);
        const current = open.get(key);
        if (current) {
          current.last = Math.max(current.last, requested);
          current.seen = e.t;
        } else {
          const phase = phases.get(node)?.[route];
          const says = phase ? ` (phase ${phase})` : "";
          open.set(key, { since: answered, last: answered, seen: e.t, detail: consulSays ? `Consul shows ${node} holding ${route}, its status does not${says}` : `${node} reports holding ${route}${says}, Consul does not` });
        }
      }
    }
  }
  for (const key of [...open.keys()]) close(key);
  return out.sort((a, b) => a.from - b.from);
}

/** The route a write is for: table and destination. */
function writeRoute(c: ProxyCall): string {
  return `${c.params.RouteTableId ?? "?"} ${c.params.DestinationCidrBlock ?? c.params.DestinationIpv6CidrBlock ?? "?"}`;
}

/** A write that reached EC2 (moto), whatever its answer: it may have changed the route. */
function mayHaveExecuted(c: ProxyCall): boolean {
  return (c.injected === undefined || c.injected === "rewritten") && (c.status === 200 || c.status >= 500);
}

/**
 * At most one writer per route: in the proxy's write log, a node X that writes a route after
 * another node Y has written it, within `windowMs` of Y's write, was still writing while Y
 * held the route (X … Y … X). Writes the proxy refused itself (injected faults) never reached
 * EC2 and do not count. `windowMs`: the shortest time in which the route can legitimately
 * come back to X (e.g. the suite's lock-delay or hold-down). Routes are told apart by table
 * and destination. With `evidence` (what Consul showed), X's write is excused when an observation
 * asked after Y's takeover write, and no later than `graceMs` after X's write, shows X holding
 * the key: X got it back (Y released at once, e.g. its check failed), which a window cannot tell
 * from a stale write.
 */
/** Consul showed `caller` holding the route (table id and destination, as writes name it) at an observation asked at `t`. */
export interface ObservedHold {
  readonly route: string;
  readonly caller: string;
  readonly t: number;
}

export function interleavedWriters(calls: readonly ProxyCall[], windowMs: number, evidence?: { holds: readonly ObservedHold[]; graceMs: number }): Violation[] {
  const writes = calls.filter((c) => ROUTE_WRITES.has(c.action) && c.action !== "DeleteRoute" && c.caller !== "admin" && mayHaveExecuted(c)).sort((a, b) => a.time - b.time);
  const byRoute = new Map<string, ProxyCall[]>();
  for (const w of writes) {
    const list = byRoute.get(writeRoute(w));
    if (list) list.push(w);
    else byRoute.set(writeRoute(w), [w]);
  }
  const out: Violation[] = [];
  for (const [route, list] of byRoute) {
    for (let i = 1; i < list.length; i++) {
      const w = list[i] as ProxyCall;
      // The first write by someone else since this writer's previous write: the takeover.
      let takeover: ProxyCall | undefined;
      let wroteBefore = false;
      for (let j = i - 1; j >= 0; j--) {
        const prev = list[j] as ProxyCall;
        if (prev.caller === w.caller) {
          wroteBefore = true;
          break;
        }
        takeover = prev;
      }
      const other = takeover;
      const handedBack = (from: number) => evidence?.holds.some((h) => h.route === route && h.caller === w.caller && h.t >= from && h.t <= w.time + evidence.graceMs) ?? false;
      if (other && wroteBefore && w.time - other.time < windowMs && !handedBack(other.time)) {
        out.push({ invariant: "twoWriters", route, node: w.caller, from: other.time, to: w.time, detail: `${w.caller} wrote ${route} ${w.time - other.time} ms after ${other.caller} took it over (window ${windowMs} ms)` });
      }
    }
  }
  return out;
}
