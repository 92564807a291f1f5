import type { Topology } from "../netns.js";
import { nsRun } from "../netns.js";
import { scenario as scenarioNamed, type Scenario } from "./scenarios.js";
import { makeSystem, type FailoverSystem, type SystemName } from "./systems.js";
import { runTrial, type TrialResult } from "./trial.js";
import { FAST_GOSSIP_HCL, World } from "./world.js";

/**
 * The run inside the hub namespace: for each Consul gossip setting, start Consul, then for each
 * system start it on every host and run every scenario's trials against it.
 */

export interface LabSpec {
  systems: SystemName[];
  scenarios: string[];
  trials: number;
  /** Fewer trials for a slow system (e.g. consul-lock pays 15 s lock-delay per failover). */
  trialsBySystem?: Partial<Record<SystemName, number>>;
}

export interface LabRun {
  scenario: string;
  system: SystemName;
  trials: TrialResult[];
  error?: string;
}

export interface LabResult {
  runs: LabRun[];
  startedAt: string;
  finishedAt: string;
}

const log = (msg: string) => process.stderr.write(`[faults ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);

async function startSystem(world: World, system: FailoverSystem): Promise<void> {
  for (const h of world.hosts) h.setHealthy(true);
  await world.resetRoute();
  for (const h of world.hosts) await system.start(h);
}

async function stopSystem(world: World, system: FailoverSystem): Promise<void> {
  await Promise.all(world.hosts.map((h) => system.stop(h)));
}

/** Puts every host back after a failed trial: links up, no iptables rules, agents running. */
async function repair(world: World, system: FailoverSystem): Promise<void> {
  world.proxy.clearFaults();
  for (const h of world.hosts) {
    h.partitioned = false;
    h.setHealthy(true);
    nsRun(h.ns, ["iptables", "-F"]);
  }
  for (const s of world.topology.servers) nsRun(s.ns, ["iptables", "-F"]);
  world.isolatedServers.clear();
  for (const s of world.servers) if (s.process.hasExited) await s.restart();
  await stopSystem(world, system);
  for (const h of world.hosts) {
    if (h.poweredOff) {
      nsRun(world.topology.hub.ns, ["ip", "link", "set", h.node.hubVeth as string, "up"]);
      h.poweredOff = false;
    }
    if (!h.aemm || h.aemm.process.hasExited) await world.startHostAemm(h);
    if (h.consul?.process.hasExited) await h.consul.restart();
  }
  for (const h of world.hosts) await system.start(h);
}

export async function runLab(topology: Topology, spec: LabSpec): Promise<LabResult> {
  const startedAt = new Date().toISOString();
  const runs: LabRun[] = [];
  const world = await World.start(topology);
  try {
    for (const h of world.hosts) await world.startHostAemm(h);
    for (const gossip of ["default", "fast"] as const) {
      const systems = spec.systems.map((n) => makeSystem(world, n)).filter((s) => s.gossip === gossip);
      if (!systems.length) continue;
      log(`Consul cluster with ${gossip} gossip`);
      await world.startConsul(gossip === "fast" ? FAST_GOSSIP_HCL : "");
      for (const system of systems) {
        const scenarios: Scenario[] = spec.scenarios.map(scenarioNamed).filter((s) => !s.routeleaderOnly || system.name.startsWith("routeleader"));
        log(`${system.name}: starting on ${world.hosts.length} hosts`);
        await startSystem(world, system);
        for (const sc of scenarios) {
          const run: LabRun = { scenario: sc.name, system: system.name as SystemName, trials: [] };
          runs.push(run);
          const n = spec.trialsBySystem?.[system.name as SystemName] ?? spec.trials;
          for (let i = 0; i < n; i++) {
            try {
              const r = await runTrial(world, system, sc);
              run.trials.push(r);
              log(`${system.name} ${sc.name} #${i + 1}: ${r.ms ?? "-"} ms, changes ${r.routeChanges}, stray writes ${r.splitBrainWrites}${r.violations.length ? `, VIOLATIONS: ${r.violations.join("; ")}` : ""}`);
            } catch (err) {
              run.error = (err as Error).message;
              log(`${system.name} ${sc.name} #${i + 1} failed: ${run.error}`);
              await repair(world, system).catch((e: Error) => log(`repair failed: ${e.message}`));
              break;
            }
          }
        }
        await stopSystem(world, system);
      }
    }
  } finally {
    await world.stop().catch((err: Error) => log(`teardown: ${err.message}`));
  }
  return { runs, startedAt, finishedAt: new Date().toISOString() };
}
