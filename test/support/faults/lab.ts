import type { Topology } from "../netns.js";
import { nsRun } from "../netns.js";
import { scenario as scenarioNamed, type Scenario } from "./scenarios.js";
import { AWS_LIKE_LATENCY } from "../fault-proxy.js";
import { GOSSIP_OF, makeSystem, type FailoverSystem, type SystemName } from "./systems.js";
import { runTrial, type TrialResult } from "./trial.js";
import { HOSTS_PER_LANE, World } from "./world.js";

/**
 * The run inside the hub namespace. Every system gets a lane: its own 3 hosts and route table,
 * in the same namespaces' bridge, against the same moto and proxy; systems measured with the
 * default gossip share one Consul cluster, those with the fast gossip another. For each scenario
 * the lanes run their trials one after another, never side by side (2 cores).
 */

export interface LabSpec {
  systems: SystemName[];
  scenarios: string[];
  trials: number;
  /** Trial counts by "system/scenario", "system" or "scenario" (first match wins). */
  trialsFor?: Record<string, number>;
  /** The proxy adds EC2-like latency to every call (AWS_LIKE_LATENCY) instead of moto's instant answers. */
  awsLike?: boolean;
}

export interface LabRun {
  scenario: string;
  system: SystemName;
  /** Which of several runs of the lab (bench:failover --runs), from 1; absent for a single run. */
  run?: number;
  trials: TrialResult[];
  error?: string;
}

export interface LabResult {
  runs: LabRun[];
  startedAt: string;
  finishedAt: string;
  /** Name prefix of the lab's namespaces (set by runFaultLab). */
  prefix?: string;
}

/** A lane that needs more repairs than this in one scenario stops there. */
const MAX_REPAIRS = 3;

const log = (msg: string) => process.stderr.write(`[faults ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);

/** The namespaces a lab with these systems needs. */
export function topologyFor(systems: SystemName[]): { hosts: number; servers: number } {
  return { hosts: systems.length * HOSTS_PER_LANE, servers: 3 * new Set(systems.map((s) => GOSSIP_OF[s])).size };
}

export function trialsFor(spec: LabSpec, system: string, scenario: string): number {
  const t = spec.trialsFor ?? {};
  return t[`${system}/${scenario}`] ?? t[system] ?? t[scenario] ?? spec.trials;
}

function applies(sc: Scenario, system: FailoverSystem): boolean {
  return !sc.routeleaderOnly || system.lane.name.startsWith("routeleader");
}

export async function startSystem(world: World, system: FailoverSystem): Promise<void> {
  for (const h of system.lane.hosts) h.setHealthy(true);
  await world.resetRoute(system.lane);
  for (const h of system.lane.hosts) await system.start(h);
}

/** Puts a lane back after a failed trial: links up, no iptables rules, Consul and the system running. */
async function repair(world: World, system: FailoverSystem): Promise<void> {
  world.proxy.clearFaults();
  const cluster = system.lane.cluster;
  for (const s of cluster.nodes) nsRun(s.ns, ["iptables", "-F"]);
  cluster.isolated.clear();
  for (const s of cluster.servers) if (s.process.hasExited) await s.restart();
  await Promise.all(system.lane.hosts.map((h) => system.stop(h)));
  for (const h of system.lane.hosts) {
    h.partitioned = false;
    h.setHealthy(true);
    nsRun(h.ns, ["iptables", "-F"]);
    if (h.poweredOff) {
      nsRun(world.topology.hub.ns, ["ip", "link", "set", h.node.hubVeth as string, "up"]);
      h.poweredOff = false;
    }
    if (!h.aemm || h.aemm.process.hasExited) await world.startHostAemm(h);
    if (h.consul?.process.hasExited) await h.consul.restart();
  }
  for (const h of system.lane.hosts) await system.start(h);
}

async function runLane(world: World, system: FailoverSystem, sc: Scenario, n: number): Promise<LabRun> {
  const run: LabRun = { scenario: sc.name, system: system.lane.name as SystemName, trials: [] };
  // A fault in a shared Consul cluster (another lane's scenario) may have stopped it.
  for (const h of system.lane.hosts) if (!system.running(h) && !h.poweredOff) await system.start(h);
  const errors: string[] = [];
  for (let i = 0; i < n && errors.length < MAX_REPAIRS; i++) {
    try {
      const r = await runTrial(world, system, sc);
      run.trials.push(r);
      log(`${run.system} ${sc.name} #${i + 1}: ${r.ms ?? "-"} ms, changes ${r.routeChanges}, stray writes ${r.splitBrainWrites}${r.violations.length ? `, VIOLATIONS: ${r.violations.join("; ")}` : ""}`);
      if (r.violations.some((v) => v.includes("no steady state"))) await repair(world, system);
    } catch (err) {
      errors.push((err as Error).message);
      log(`${run.system} ${sc.name} #${i + 1} failed: ${(err as Error).message}`);
      await repair(world, system).catch((e: Error) => log(`repair failed: ${e.message}`));
    }
  }
  if (errors.length) run.error = errors.join(" | ");
  return run;
}

/** `save` gets the result so far after every scenario, so a run cut short keeps its trials. */
export async function runLab(topology: Topology, spec: LabSpec, save?: (partial: LabResult) => void): Promise<LabResult> {
  const startedAt = new Date().toISOString();
  const runs: LabRun[] = [];
  const world = await World.start(
    topology,
    spec.systems.map((name) => ({ name, gossip: GOSSIP_OF[name] })),
  );
  try {
    if (spec.awsLike) world.proxy.setLatency(AWS_LIKE_LATENCY);
    await Promise.all(world.hosts.map((h) => world.startHostAemm(h)));
    log(`Consul: ${world.clusters.map((c) => `${c.gossip} gossip (${c.nodes.map((n) => n.role).join(",")})`).join("; ")}`);
    await world.startConsul();
    const systems = world.lanes.map((lane) => makeSystem(world, lane));
    for (const system of systems) {
      log(`${system.lane.name}: starting on ${system.lane.hosts.map((h) => h.name).join(",")}`);
      await startSystem(world, system);
    }
    for (const sc of spec.scenarios.map(scenarioNamed)) {
      const lanes = systems.filter((s) => applies(sc, s));
      const n = (s: FailoverSystem) => trialsFor(spec, s.lane.name, sc.name);
      // One lane after another, exclusive or not: concurrent lanes on 2 cores would time each other's load (issue #16).
      for (const s of lanes) runs.push(await runLane(world, s, sc, n(s)));
      save?.({ runs, startedAt, finishedAt: new Date().toISOString() });
    }
    await Promise.all(systems.flatMap((s) => s.lane.hosts.map((h) => s.stop(h))));
  } finally {
    await world.stop().catch((err: Error) => log(`teardown: ${err.message}`));
  }
  return { runs, startedAt, finishedAt: new Date().toISOString() };
}
