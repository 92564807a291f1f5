/**
 * No-regression check of a bench:failover run against the published figures: per scenario and
 * system, p50 and p95 of the new run over the published ones, and whether each is within the
 * allowed ratio (issue #14: 10 %). The new run's own liveness/invariant violations are carried.
 *
 *   npx tsx scripts/failover-regression.ts --run <out-dir of bench:failover> [--baseline docs/benchmarks/failover.json]
 *     [--command "<the bench command>"] [--within 0.10]    (writes docs/benchmarks/failover-regression.json)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

interface Figures {
  trials: number;
  p50_ms: number | null;
  p95_ms: number | null;
  max_ms: number | null;
  split_brain_writes: number;
  not_converged: number;
  route_changes_max: number;
  violations: number;
}
type Table = Record<string, Record<string, Figures>>;

const REPO = join(import.meta.dirname, "..");
const { values } = parseArgs({
  options: {
    run: { type: "string" },
    baseline: { type: "string", default: join(REPO, "docs", "benchmarks", "failover.json") },
    command: { type: "string", default: "" },
    within: { type: "string", default: "0.10" },
    out: { type: "string", default: join(REPO, "docs", "benchmarks", "failover-regression.json") },
  },
});
if (!values.run) {
  console.error("failover-regression: --run <out-dir of an npm run bench:failover -- --out-dir …> is required");
  process.exit(2);
}
const within = Number(values.within);
const baseline = JSON.parse(readFileSync(values.baseline, "utf8")) as Table;
const current = JSON.parse(readFileSync(join(values.run, "benchmarks", "failover.json"), "utf8")) as Table;
const page = readFileSync(join(values.run, "benchmarks.md"), "utf8");
const load = /load average ([\d.]+) at the start and ([\d.]+) at the end/.exec(page);
const period = /\(([0-9T:.Z-]+) – ([0-9T:.Z-]+)/.exec(page);

const ratio = (now: number | null, before: number | null | undefined) => (now === null || before === null || before === undefined || before === 0 ? null : Math.round((now / before) * 1000) / 1000);
const rows = Object.entries(current).flatMap(([scenario, systems]) =>
  Object.entries(systems).map(([system, f]) => {
    const b = baseline[scenario]?.[system];
    const p50 = ratio(f.p50_ms, b?.p50_ms);
    const p95 = ratio(f.p95_ms, b?.p95_ms);
    return {
      scenario,
      system,
      trials: f.trials,
      baselineTrials: b?.trials ?? null,
      p50_ms: f.p50_ms,
      baselineP50_ms: b?.p50_ms ?? null,
      p50Ratio: p50,
      p95_ms: f.p95_ms,
      baselineP95_ms: b?.p95_ms ?? null,
      p95Ratio: p95,
      withinP50: p50 !== null && p50 <= 1 + within,
      withinP95: p95 !== null && p95 <= 1 + within,
      splitBrainWrites: f.split_brain_writes,
      violations: f.violations,
    };
  }),
);
const result = {
  benchmark: "failover-regression",
  command: values.command,
  run: period ? { startedAt: period[1], finishedAt: period[2] } : undefined,
  loadAverage1m: load ? { start: Number(load[1]), end: Number(load[2]) } : undefined,
  cores: 2,
  allowed: `ratio ≤ ${1 + within} (p50 and p95, new run / published docs/benchmarks/failover.json)`,
  rows,
  allWithin: rows.filter((r) => r.system.startsWith("routeleader")).every((r) => r.withinP50 && r.withinP95),
};
writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
for (const r of rows) console.log(`${r.scenario} / ${r.system}: p50 ${r.p50_ms} ms vs ${r.baselineP50_ms} (×${r.p50Ratio}), p95 ${r.p95_ms} vs ${r.baselineP95_ms} (×${r.p95Ratio}), violations ${r.violations}`);
console.log(`load average ${load ? `${load[1]} → ${load[2]}` : "unknown"}; routeleader within ${within * 100} %: ${result.allWithin}; written to ${values.out}`);
