import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Topology } from "../netns.js";
import { routeChanges, routeWrites, splitBrainWrites } from "./invariants.js";
import { startSystem } from "./lab.js";
import { HostCpu, HostNetem, netemArgs, releaseCpuRoot, type NetemSpec } from "./stress.js";
import { GOSSIP_OF, makeSystem, python, type FailoverSystem, type SystemName } from "./systems.js";
import { steady } from "./trial.js";
import { World } from "./world.js";

/**
 * A steady 3-node cluster that must not fail over (issue #16, false failovers): the fault lab's
 * hosts, Consul and moto, one routeleader lane, tc netem on every host and CPU-starvation bursts
 * on the holder, for a fixed time. Every holder change in Consul, release or loss logged by an
 * agent, session destroyed by the peers or invalidated by Consul, and route change in the
 * proxy's log is an incident; incidents less than EPISODE_GAP_MS apart are one false failover.
 * Near misses are counted too: a peer that found the holder silent, a minority verdict.
 */

export interface SteadySpec {
  system: SystemName;
  minutes: number;
  netem: NetemSpec;
  starve: {
    /** The holder's CPU quota during a burst, % of one core (cgroup v1 cpu.cfs_quota_us). */
    cpuPercent: number;
    burstMs: number;
    /** A burst starts every this long (the first after one quiet interval). */
    everyMs: number;
    /** A busy loop in the holder's cgroup during the burst. */
    spinner: boolean;
  };
}

export interface Incident {
  t: string;
  /** Seconds since the steady state was reached. */
  atS: number;
  host?: string;
  kind: "holder-change" | "released" | "lost" | "acquired" | "session-destroyed-by-peers" | "session-invalidated" | "route-change";
  reason: string;
}

export interface FalseFailover {
  t: string;
  atS: number;
  /** During a starvation burst on the holder. */
  duringBurst: boolean;
  incidents: Incident[];
}

export interface Burst {
  host: string;
  atS: number;
  throttledPeriods: number;
  throttledMs: number;
}

export interface SteadyResult {
  system: SystemName;
  profile: string;
  gossip: "default" | "fast";
  minutes: number;
  conditions: { netem: string; netemOn: string; starvation: string };
  startedAt: string;
  finishedAt: string;
  bursts: number;
  burstList: Burst[];
  holderChanges: number;
  routeChanges: number;
  sessionDestroysByPeers: number;
  sessionsInvalidated: number;
  releasesOrLosses: number;
  strayWrites: number;
  falseFailovers: number;
  failovers: FalseFailover[];
  nearMisses: { peerSilences: number; minorityVerdicts: number; examples: string[] };
  netem: Record<string, { sent: number; dropped: number }>;
  consulSamples: number;
  loadAverage: { start: number; end: number; mean: number; max: number };
}

const SAMPLE_MS = 1000;
const EPISODE_GAP_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => process.stderr.write(`[steady ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);

interface AgentLine {
  time?: string;
  event?: string;
  step?: string;
  msg?: string;
  reason?: string;
  act?: boolean;
  holder?: string;
}

function agentLines(file: string): AgentLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as AgentLine];
      } catch {
        return [];
      }
    });
}

/** Groups incidents (sorted by time) into episodes. */
export function episodes(incidents: readonly Incident[], bursts: readonly { atS: number }[], burstS: number): FalseFailover[] {
  const out: FalseFailover[] = [];
  for (const i of [...incidents].sort((a, b) => a.atS - b.atS)) {
    const last = out.at(-1);
    if (last && (i.atS - (last.incidents.at(-1)?.atS ?? last.atS)) * 1000 < EPISODE_GAP_MS) last.incidents.push(i);
    else out.push({ t: i.t, atS: i.atS, duringBurst: bursts.some((b) => i.atS >= b.atS && i.atS <= b.atS + burstS + 5), incidents: [i] });
  }
  return out;
}

export async function runSteady(topology: Topology, spec: SteadySpec): Promise<SteadyResult> {
  const startedAt = new Date().toISOString();
  const logDir = mkdtempSync(join(tmpdir(), `${topology.prefix}-logs-`));
  // The routeleader lane appends every agent line here (systems.ts).
  process.env.ROUTELEADER_LAB_LOGS = logDir;
  const gossip = GOSSIP_OF[spec.system];
  const world = await World.start(topology, [{ name: spec.system, gossip }]);
  const cpus = new Map<string, HostCpu>();
  const nets = new Map<string, HostNetem>();
  const loads: number[] = [loadavg()[0]!];
  try {
    await Promise.all(world.hosts.map((h) => world.startHostAemm(h)));
    await world.startConsul();
    const system: FailoverSystem = makeSystem(world, world.lanes[0]!);
    if (!system.observe) throw new Error(`${spec.system} does not report its holds: the steady run is for routeleader lanes`);
    await startSystem(world, system);
    const first = await steady(world, system, 90_000);
    for (const h of world.hosts) cpus.set(h.name, new HostCpu(h.ns, `${topology.prefix}-${h.name}`));
    for (const [i, h] of world.hosts.entries()) {
      const net = new HostNetem(h.ns, spec.netem, python());
      await net.start(i + 1);
      nets.set(h.name, net);
    }
    const delayers = [...nets.values()].flatMap((n) => n.pids);
    for (const c of cpus.values()) c.adopt(delayers);
    // Netem slows everything down: wait for the steady state again before the clock starts.
    const holder = await steady(world, system, 90_000);
    const t0 = Date.now();
    const atS = (t: number) => Math.round((t - t0) / 100) / 10;
    const logStart = world.proxy.calls().length;
    log(`${spec.system}: steady, holder ${holder.name} (was ${first.name}); ${nets.get(holder.name)!.mode} ${netemArgs(spec.netem).join(" ")} on ${world.hosts.map((h) => h.name).join(",")}; ${spec.minutes} min`);

    const incidents: Incident[] = [];
    let samples = 0;
    let last = await system.observe();
    const sampler = (async () => {
      while (Date.now() - t0 < spec.minutes * 60_000) {
        await sleep(SAMPLE_MS);
        loads.push(loadavg()[0]!);
        const seen = await system.observe!().catch(() => undefined);
        if (!seen) continue;
        samples++;
        const before = last.holder;
        const now = seen.holder;
        if (before?.session !== now?.session || before?.instanceId !== now?.instanceId) {
          const name = (id?: string) => world.hostByInstance(id)?.name ?? id ?? "nobody";
          incidents.push({ t: new Date().toISOString(), atS: atS(Date.now()), kind: "holder-change", reason: `Consul: ${name(before?.instanceId)} (session ${before?.session ?? "-"}) → ${name(now?.instanceId)} (session ${now?.session ?? "-"})` });
          log(`holder change: ${incidents.at(-1)!.reason}`);
        }
        last = seen;
      }
    })();

    const bursts: Burst[] = [];
    const burster = (async () => {
      for (;;) {
        const quietMs = spec.starve.everyMs - spec.starve.burstMs;
        if (Date.now() - t0 + quietMs + spec.starve.burstMs > spec.minutes * 60_000) break;
        await sleep(quietMs);
        const target = world.hostByInstance(last.holder?.instanceId) ?? holder;
        const cpu = cpus.get(target.name)!;
        const before = cpu.throttled();
        const at = Date.now();
        cpu.starve(spec.starve.cpuPercent, spec.starve.spinner, delayers);
        await sleep(spec.starve.burstMs);
        await cpu.relieve();
        const after = cpu.throttled();
        bursts.push({ host: target.name, atS: atS(at), throttledPeriods: after.periods - before.periods, throttledMs: after.ms - before.ms });
        log(`burst #${bursts.length} on ${target.name}: ${spec.starve.cpuPercent} % of a core for ${spec.starve.burstMs} ms, throttled ${after.periods - before.periods} periods (${after.ms - before.ms} ms)`);
      }
    })();
    await Promise.all([sampler, burster]);
    const finishedAtMs = Date.now();
    for (const n of nets.values()) await n.stop();
    const netem = Object.fromEntries(world.hosts.map((h) => [h.name, nets.get(h.name)!.counters()]));

    // What the agents logged between t0 and the end.
    const nearExamples: string[] = [];
    let peerSilences = 0;
    let minorityVerdicts = 0;
    let destroys = 0;
    let invalidated = 0;
    let releases = 0;
    for (const h of world.hosts) {
      for (const line of agentLines(join(logDir, `${spec.system}-${h.name}.log`))) {
        const t = Date.parse(line.time ?? "");
        if (!(t >= t0 && t <= finishedAtMs)) continue;
        const base = { t: line.time as string, atS: atS(t), host: h.name };
        if (line.event === "released" || line.event === "lost" || line.event === "acquired") {
          if (line.event !== "acquired") releases++;
          incidents.push({ ...base, kind: line.event, reason: `${line.msg ?? line.event}${line.reason ? ` (${line.reason})` : ""}` });
        } else if (line.step === "peers" && line.act === true) {
          destroys++;
          incidents.push({ ...base, kind: "session-destroyed-by-peers", reason: line.msg ?? "" });
        } else if (line.step === "session" && line.msg === "session invalidated by Consul") {
          invalidated++;
          incidents.push({ ...base, kind: "session-invalidated", reason: `${h.name}'s session invalidated by Consul` });
        } else if (line.step === "peers" && line.act === false) {
          minorityVerdicts++;
          if (nearExamples.length < 10) nearExamples.push(`${h.name} +${atS(t)} s: ${line.msg}`);
        } else if (line.step === "peers" && /silent for/.test(line.msg ?? "")) {
          peerSilences++;
          if (nearExamples.length < 10) nearExamples.push(`${h.name} +${atS(t)} s: ${line.msg}`);
        }
      }
    }
    const writes = routeWrites(world.proxy.calls().slice(logStart), system.lane.tableId);
    const changes = routeChanges(writes, holder.instanceId);
    if (changes) incidents.push({ t: new Date(finishedAtMs).toISOString(), atS: atS(finishedAtMs), kind: "route-change", reason: `${changes} route change(s) in the proxy's log: ${writes.map((w) => `${w.caller}@+${atS(w.time)}s`).join(", ")}` });
    const stray = splitBrainWrites(writes, system.claims());
    const failovers = episodes(incidents, bursts, spec.starve.burstMs / 1000);
    await Promise.all(world.hosts.map((h) => system.stop(h)));
    const mean = loads.reduce((a, b) => a + b, 0) / loads.length;
    const round = (x: number) => Math.round(x * 100) / 100;
    return {
      system: spec.system,
      profile: spec.system.replace(/^routeleader-/, ""),
      gossip,
      minutes: Math.round(((finishedAtMs - t0) / 60_000) * 10) / 10,
      conditions: {
        netem: `netem ${netemArgs(spec.netem).join(" ")} (uniform jitter) by ${[...nets.values()][0]?.mode === "nfqueue" ? "NFQUEUE and test/support/faults/netdelay.py (this kernel has no sch_netem)" : "tc qdisc netem"}`,
        netemOn: "eth0 of every host namespace (egress: each packet a host sends to a peer, a Consul server or the EC2 endpoint; host to host crosses one such stage each way)",
        starvation: `every ${spec.starve.everyMs / 1000} s, ${spec.starve.burstMs / 1000} s on the current holder: all its processes (agent, Consul client, metadata mock) in one cgroup cut to ${spec.starve.cpuPercent} % of a core (cpu.cfs_quota_us, 100 ms period)${spec.starve.spinner ? " with a busy loop in the same cgroup" : ""}`,
      },
      startedAt,
      finishedAt: new Date().toISOString(),
      bursts: bursts.length,
      burstList: bursts,
      holderChanges: incidents.filter((i) => i.kind === "holder-change").length,
      routeChanges: changes,
      sessionDestroysByPeers: destroys,
      sessionsInvalidated: invalidated,
      releasesOrLosses: releases,
      strayWrites: stray.length,
      falseFailovers: failovers.length,
      failovers,
      nearMisses: { peerSilences, minorityVerdicts, examples: nearExamples },
      netem,
      consulSamples: samples,
      loadAverage: { start: round(loads[0]!), end: round(loads.at(-1)!), mean: round(mean), max: round(Math.max(...loads)) },
    };
  } finally {
    for (const n of nets.values()) await n.stop().catch(() => undefined);
    for (const c of cpus.values()) await c.remove().catch((err: Error) => log(`cgroup: ${err.message}`));
    try {
      releaseCpuRoot();
    } catch (err) {
      log(`cgroup: ${(err as Error).message}`);
    }
    await world.stop().catch((err: Error) => log(`teardown: ${err.message}`));
    rmSync(logDir, { recursive: true, force: true });
  }
}
