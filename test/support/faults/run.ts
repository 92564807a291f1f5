import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertNetnsAllowed, createTopology, destroyTopology, nsWrap } from "../netns.js";
import { ManagedProcess } from "../process.js";
import { topologyFor, type LabResult, type LabSpec } from "./lab.js";
import type { SystemName } from "./systems.js";

const REPO = join(import.meta.dirname, "..", "..", "..");

export interface HubRunOptions {
  timeoutMs: number;
  onLine?: (line: string) => void;
}

/**
 * Creates the namespaces the systems need, runs `script` (under scripts/) in the hub namespace
 * as `<script> <topology.json> <input.json> <output.json>` (a Node process started there, so
 * moto, the proxy and every Consul/agent address is reachable from it), returns what it wrote
 * to the output file with the namespaces' prefix, and removes everything.
 */
export async function runInHub<T extends object>(systems: SystemName[], script: string, input: unknown, options: HubRunOptions): Promise<T & { prefix: string }> {
  assertNetnsAllowed();
  const topology = createTopology(topologyFor(systems));
  const dir = mkdtempSync(join(tmpdir(), `${topology.prefix}-run-`));
  try {
    const files = { topology: join(dir, "topology.json"), input: join(dir, "input.json"), out: join(dir, "result.json") };
    writeFileSync(files.topology, JSON.stringify(topology));
    writeFileSync(files.input, JSON.stringify(input));
    const hub = new ManagedProcess("ip", [...nsWrap(topology.hub.ns).slice(1), process.execPath, "--import", "tsx", join(REPO, "scripts", script), files.topology, files.input, files.out], {
      name: "faults hub",
      cwd: REPO,
      keepLines: 2000,
    });
    if (options.onLine) hub.onLine(options.onLine);
    let exit;
    try {
      exit = await hub.waitForExit(options.timeoutMs);
    } catch (err) {
      await hub.stop(10_000);
      throw new Error(`${(err as Error).message}\n${hub.output(40)}`);
    }
    if (exit.code !== 0) throw new Error(`the fault lab (${script}) exited with ${JSON.stringify(exit)}:\n${hub.output(60)}`);
    return { ...(JSON.parse(readFileSync(files.out, "utf8")) as T), prefix: topology.prefix };
  } finally {
    destroyTopology(topology);
    // Host state directories of a hub that was killed before its own teardown.
    for (const name of readdirSync(tmpdir())) if (name.startsWith(`${topology.prefix}-`)) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

/** The failover lab (scripts/faults-hub.ts): every scenario's trials for every system. */
export async function runFaultLab(spec: LabSpec, options: HubRunOptions): Promise<LabResult> {
  return runInHub<LabResult>(spec.systems, "faults-hub.ts", spec, options);
}
