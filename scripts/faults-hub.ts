import { readFileSync, writeFileSync } from "node:fs";
import { runLab, type LabSpec } from "../test/support/faults/lab.js";
import type { Topology } from "../test/support/netns.js";

/**
 * Runs inside the hub network namespace (started by test/support/faults/run.ts):
 * `faults-hub.ts <topology.json> <spec.json> <result.json>`.
 */
const [topologyFile, specFile, outFile] = process.argv.slice(2);
if (!topologyFile || !specFile || !outFile) {
  process.stderr.write("usage: faults-hub.ts <topology.json> <spec.json> <result.json>\n");
  process.exit(2);
}
const topology = JSON.parse(readFileSync(topologyFile, "utf8")) as Topology;
const spec = JSON.parse(readFileSync(specFile, "utf8")) as LabSpec;
const result = await runLab(topology, spec, (partial) => writeFileSync(`${outFile}.partial`, JSON.stringify(partial)));
writeFileSync(outFile, JSON.stringify(result, null, 1));
process.exit(0);
