import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertNetnsAllowed, createTopology, destroyTopology, nsWrap } from "../netns.js";
import { ManagedProcess } from "../process.js";
import { topologyFor, type LabResult, type LabSpec } from "./lab.js";

const REPO = join(import.meta.dirname, "..", "..", "..");

/**
 * Creates the namespaces, runs the lab in the hub namespace (a Node process started there, so
 * moto, the proxy and every Consul/agent address is reachable from it), and removes everything.
 */
export async function runFaultLab(spec: LabSpec, options: { timeoutMs: number; onLine?: (line: string) => void }): Promise<LabResult> {
  assertNetnsAllowed();
  const topology = createTopology(topologyFor(spec.systems));
  const dir = mkdtempSync(join(tmpdir(), `${topology.prefix}-run-`));
  try {
    const files = { topology: join(dir, "topology.json"), spec: join(dir, "spec.json"), out: join(dir, "result.json") };
    writeFileSync(files.topology, JSON.stringify(topology));
    writeFileSync(files.spec, JSON.stringify(spec));
    const hub = new ManagedProcess("ip", [...nsWrap(topology.hub.ns).slice(1), process.execPath, "--import", "tsx", join(REPO, "scripts", "faults-hub.ts"), files.topology, files.spec, files.out], {
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
    if (exit.code !== 0) throw new Error(`the fault lab exited with ${JSON.stringify(exit)}:\n${hub.output(60)}`);
    return { ...(JSON.parse(readFileSync(files.out, "utf8")) as LabResult), prefix: topology.prefix };
  } finally {
    destroyTopology(topology);
    // Host state directories of a hub that was killed before its own teardown.
    for (const name of readdirSync(tmpdir())) if (name.startsWith(`${topology.prefix}-`)) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}
