import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { routeChanges, routeWrites, splitBrainWrites } from "./invariants.js";
import { LaneRecorder } from "./lane-recorder.js";
import type { Scenario } from "./scenarios.js";
import { holderAt, type FailoverSystem } from "./systems.js";
import type { Host, World } from "./world.js";

/**
 * One trial: wait for a steady state, inject the fault into the holder, poll moto every 20 ms
 * until the route points at another live, healthy host, keep the fault for its hold time, heal,
 * wait for a steady state again, then check the invariants over the whole trial: no stray
 * writes, no ping-pong, and (for systems that report their holds) the liveness invariants of
 * issue #14 over a record taken every 250 ms (./lane-recorder.ts).
 */

export interface TrialResult {
  /** Fault → route converged, ms; undefined when the scenario keeps the route in place or it never converged. */
  ms?: number;
  /** Fault → the route alone converged, ms, for systems where more must follow the holder (routeleader-eip: `ms` waits for its Elastic IP too). */
  routeMs?: number;
  /** Fault → the new holder's own claim (lock acquired, VRRP MASTER), ms; the election part of `ms`. */
  electionMs?: number;
  /** The scenario should have moved the route and it did not within CONVERGE_LIMIT_MS (censored, never dropped). */
  neverConverged?: boolean;
  /** Heal → every host ready again (a healed node stands by, with a Consul session), ms. */
  standbyMs?: number;
  /** The machine's 1-minute load average when the fault was injected. */
  loadAverage?: number;
  splitBrainWrites: number;
  routeChanges: number;
  violations: string[];
  /** Liveness invariant violations (also in `violations`); undefined for systems not recorded. */
  livenessViolations?: number;
  /** Times relative to the fault, for the timeline chart. */
  timeline: { t: number; what: string }[];
}

const POLL_MS = 20;
/** A failover trial still unconverged after this long counts as never converged, at this value. */
export const CONVERGE_LIMIT_MS = 90_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A host that could hold the route now: powered, connected, healthy, running the system. */
export function usable(world: World, system: FailoverSystem, h: Host | undefined): boolean {
  return !!h && !h.poweredOff && !h.partitioned && existsSync(h.healthFile) && system.running(h);
}

/**
 * Every usable host is ready, one host holds the route by its own claims (and by Consul for
 * lock-based systems), and the route table points at it; with quietMs, without a break for that
 * long. Returns the holder.
 */
export async function steady(world: World, system: FailoverSystem, timeoutMs: number, quietMs = 0): Promise<Host> {
  return (await steadySince(world, system, timeoutMs, quietMs)).holder;
}

/** steady(), with when the quiet run that ended it began (every check passing since then). */
export async function steadySince(world: World, system: FailoverSystem, timeoutMs: number, quietMs = 0): Promise<{ holder: Host; since: number }> {
  const deadline = Date.now() + timeoutMs + quietMs;
  let why = "";
  let lastNotReady: string[] = [];
  /** Since when every check has passed without a break (quietMs asks for this long). */
  let steadySince: number | undefined;
  while (Date.now() < deadline) {
    try {
      const notReady = [];
      for (const h of system.lane.hosts) if (!(await system.ready(h))) notReady.push(h.name);
      lastNotReady = notReady;
      const claimed = holderAt(system.claims(), Date.now());
      const target = await world.routeTarget(system.lane);
      const holder = world.hostByInstance(target);
      const consul = system.consulHolder ? await system.consulHolder() : claimed;
      why = `not ready: [${notReady.join(",")}], claims: ${claimed}, consul: ${consul}, route: ${holder?.name ?? target}`;
      if (notReady.length === 0 && holder && claimed === holder.name && consul === holder.name && usable(world, system, holder)) {
        steadySince ??= Date.now();
        if (Date.now() - steadySince >= quietMs) return { holder, since: steadySince };
      } else {
        steadySince = undefined;
      }
    } catch (err) {
      why = (err as Error).message;
      steadySince = undefined;
    }
    await sleep(100);
  }
  // What the hosts that were not ready last printed says why, for a lab failure's message.
  const output = system.lane.hosts
    .filter((h) => lastNotReady.includes(h.name))
    .map((h) => `\n${h.name} ${system.outputOf?.(h, 8) ?? ""}`)
    .join("");
  throw new Error(`${system.name}: no steady state within ${timeoutMs} ms (${why})${output}`);
}

export async function runTrial(world: World, system: FailoverSystem, scenario: Scenario, steadyTimeoutMs = 45_000): Promise<TrialResult> {
  const holder = await steady(world, system, steadyTimeoutMs);
  const before = holder.instanceId;
  const logStart = world.proxy.calls().length;
  const violations: string[] = [];
  const timeline: { t: number; what: string }[] = [];
  const loadAverage = Math.round(loadavg()[0]! * 100) / 100;
  const recorder = new LaneRecorder(world, system).start();
  await recorder.sample().catch(() => undefined);
  const fault = await scenario.inject(world, system, holder);
  let neverConverged = false;
  let ms: number | undefined;
  let routeMs: number | undefined;
  let faultWrites = 0;
  if (scenario.failover) {
    const deadline = fault.t0 + CONVERGE_LIMIT_MS;
    for (;;) {
      const target = await world.routeTarget(system.lane);
      const now = Date.now();
      const next = world.hostByInstance(target);
      if (target !== before && next && usable(world, system, next)) {
        if (routeMs === undefined) {
          routeMs = now - fault.t0;
          timeline.push({ t: routeMs, what: `route → ${next.name}` });
        }
        // The route alone is not the whole failover when more follows the holder (its Elastic IP).
        if (!system.servedBy || (await system.servedBy(next).catch(() => false))) {
          ms = Date.now() - fault.t0;
          if (system.servedBy) timeline.push({ t: ms, what: `Elastic IP → ${next.name}` });
          break;
        }
      }
      if (now > deadline) {
        neverConverged = true;
        violations.push(`route did not move to a live, healthy host within ${CONVERGE_LIMIT_MS / 1000} s (points at ${target})`);
        break;
      }
      await sleep(POLL_MS);
    }
  }
  if (fault.holdMs) await sleep(fault.holdMs);
  if (scenario.noWritesDuringFault) faultWrites = routeWrites(world.proxy.calls().slice(logStart), system.lane.tableId).length;
  const healedAt = Date.now();
  await fault.heal();
  let standbyMs: number | undefined;
  try {
    const { holder: after, since } = await steadySince(world, system, steadyTimeoutMs, fault.settleMs);
    standbyMs = Math.max(0, since - healedAt);
    if (!scenario.failover && after.instanceId !== before) violations.push(`route moved from ${holder.name} to ${after.name} although the holder stayed healthy`);
  } catch (err) {
    violations.push((err as Error).message);
  }
  await recorder.stop();
  const liveness = recorder.violations();
  for (const v of liveness) violations.push(`liveness ${v.invariant} (${v.node ?? "?"}, ${v.from - fault.t0}..${v.to - fault.t0} ms): ${v.detail}`);
  const writes = routeWrites(world.proxy.calls().slice(logStart), system.lane.tableId);
  const stray = splitBrainWrites(writes, system.claims());
  const changes = routeChanges(writes, before);
  for (const w of writes) timeline.push({ t: w.time - fault.t0, what: `${w.action} by ${w.caller} (${w.status})` });
  for (const c of system.claims()) if (c.t >= fault.t0 - 1000 && c.t <= Date.now()) timeline.push({ t: c.t - fault.t0, what: `${c.host} ${c.kind}${c.detail ? ` (${c.detail})` : ""}` });
  timeline.push({ t: healedAt - fault.t0, what: "healed" });
  timeline.sort((a, b) => a.t - b.t);
  if (stray.length) violations.push(`${stray.length} route write(s) by a host that did not hold the route: ${stray.map((w) => `${w.caller}@${w.time - fault.t0}ms`).join(", ")}`);
  if (changes > scenario.maxRouteChanges) violations.push(`${changes} route changes (at most ${scenario.maxRouteChanges} allowed): ping-pong`);
  if (faultWrites) violations.push(`${faultWrites} route write(s) while Consul had no quorum`);
  const elected = ms === undefined ? undefined : system.claims().find((c) => c.kind === "acquire" && c.host !== holder.name && c.t >= fault.t0 && c.t <= fault.t0 + ms);
  return {
    ...(ms !== undefined ? { ms } : {}),
    ...(system.servedBy && routeMs !== undefined ? { routeMs } : {}),
    ...(elected ? { electionMs: elected.t - fault.t0 } : {}),
    ...(neverConverged ? { neverConverged } : {}),
    ...(standbyMs !== undefined ? { standbyMs } : {}),
    ...(recorder.applies ? { livenessViolations: liveness.length } : {}),
    loadAverage,
    splitBrainWrites: stray.length, routeChanges: changes, violations, timeline };
}
