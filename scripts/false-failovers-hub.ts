import { readFileSync, writeFileSync } from "node:fs";
import type { Topology } from "../test/support/netns.js";
import { runSteady, type SteadySpec } from "../test/support/faults/steady-run.js";

/**
 * Runs inside the hub network namespace (started by test/support/faults/run.ts runInHub):
 * `false-failovers-hub.ts <topology.json> <spec.json> <result.json>`.
 */
const [topologyFile, specFile, outFile] = process.argv.slice(2);
if (!topologyFile || !specFile || !outFile) {
  process.stderr.write("usage: false-failovers-hub.ts <topology.json> <spec.json> <result.json>\n");
  process.exit(2);
}
const topology = JSON.parse(readFileSync(topologyFile, "utf8")) as Topology;
const spec = JSON.parse(readFileSync(specFile, "utf8")) as SteadySpec;
const result = await runSteady(topology, spec);
writeFileSync(outFile, JSON.stringify(result, null, 1));
process.exit(0);
