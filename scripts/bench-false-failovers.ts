import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { runInHub } from "../test/support/faults/run.js";
import type { SteadyResult, SteadySpec } from "../test/support/faults/steady-run.js";
import { cpuRoot, releaseCpuRoot } from "../test/support/faults/stress.js";

/**
 * False-failover benchmark (issue #16 goal 2): a steady 3-node cluster in the fault lab's
 * namespaces, tc netem on every host and CPU-starvation bursts on the holder, for the default
 * profile and then for `fast` (one after the other, never side by side). A false failover is any
 * holder change, release or session destroy while nothing but jitter, loss and starvation was
 * injected (test/support/faults/steady-run.ts). Writes docs/benchmarks/false-failovers.json
 * after each profile, so a run cut short keeps what it measured.
 *
 *   npm run bench:false-failovers -- [--minutes 30 | --minutes default=30,fast=15] [--profiles default,fast]
 *     [--delay-ms 50] [--jitter-ms 50] [--loss 2] [--cpu-percent 10] [--burst-s 20] [--every-s 60]
 *     [--no-spinner] [--out docs/benchmarks/false-failovers.json]
 */

const PROFILES = ["default", "fast"] as const;

function fail(message: string): never {
  process.stderr.write(`bench:false-failovers: ${message}\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      minutes: { type: "string", default: "30" },
      profiles: { type: "string", default: PROFILES.join(",") },
      "delay-ms": { type: "string", default: "50" },
      "jitter-ms": { type: "string", default: "50" },
      loss: { type: "string", default: "2" },
      "cpu-percent": { type: "string", default: "10" },
      "burst-s": { type: "string", default: "20" },
      "every-s": { type: "string", default: "60" },
      "no-spinner": { type: "boolean", default: false },
      out: { type: "string", default: join(import.meta.dirname, "..", "docs", "benchmarks", "false-failovers.json") },
    },
  });
} catch (err) {
  fail((err as Error).message);
}
const { values } = parsed;

function num(name: keyof typeof values, min: number, max: number): number {
  const raw = values[name] as string;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n < min || n > max) fail(`--${name} ${JSON.stringify(raw)}: expected a number from ${min} to ${max}`);
  return n;
}

const profiles = values.profiles.split(",").map((p) => p.trim());
for (const p of profiles) if (!(PROFILES as readonly string[]).includes(p)) fail(`--profiles: unknown profile ${JSON.stringify(p)} (known: ${PROFILES.join(", ")})`);
/** Minutes per profile: one number for all, or "default=30,fast=15". */
const minutesOf: Record<string, number> = {};
for (const part of values.minutes.split(",")) {
  const [k, v] = part.includes("=") ? part.split("=") : [undefined, part];
  if (k !== undefined && !profiles.includes(k.trim())) fail(`--minutes ${JSON.stringify(values.minutes)}: ${JSON.stringify(k)} is not one of --profiles (${profiles.join(", ")})`);
  const n = Number(v);
  if (!v?.trim() || !Number.isFinite(n) || n < 0.5 || n > 24 * 60) fail(`--minutes ${JSON.stringify(values.minutes)}: expected minutes from 0.5 to 1440, or profile=minutes pairs`);
  for (const p of k === undefined ? profiles : [k.trim()]) minutesOf[p] = n;
}
for (const p of profiles) if (minutesOf[p] === undefined) fail(`--minutes ${JSON.stringify(values.minutes)}: no minutes for profile ${p}`);
const netem = { delayMs: num("delay-ms", 0, 5000), jitterMs: num("jitter-ms", 0, 5000), lossPercent: num("loss", 0, 100) };
const burstS = num("burst-s", 1, 3600);
const everyS = num("every-s", 2, 3600);
if (everyS <= burstS) fail(`--every-s ${everyS} must be longer than --burst-s ${burstS} (a quiet interval between bursts)`);
const starve = { cpuPercent: num("cpu-percent", 1, 100), burstMs: burstS * 1000, everyMs: everyS * 1000, spinner: !values["no-spinner"] };
try {
  cpuRoot();
  releaseCpuRoot();
} catch (err) {
  fail((err as Error).message);
}

const command = `npm run bench:false-failovers -- ${process.argv.slice(2).join(" ")}`.trim();
const out: { command: string; machine: string; startedAt: string; definition: string; profiles: Record<string, SteadyResult | { error: string }> } = {
  command,
  machine: `${cpus().length} cores shared with other work; 1-minute load average ${loadavg()[0]!.toFixed(2)} at the start`,
  startedAt: new Date().toISOString(),
  definition:
    "A false failover: any holder change in Consul, release or loss logged by an agent, session destroyed by the peers or invalidated by Consul, or route change, while nothing but network jitter/loss and CPU starvation was injected; incidents less than 15 s apart count as one.",
  profiles: {},
};
const save = () => {
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(out, null, 2)}\n`);
};

let failed = false;
for (const profile of profiles) {
  const minutes = minutesOf[profile] as number;
  const spec: SteadySpec = { system: `routeleader-${profile}` as SteadySpec["system"], minutes, netem, starve };
  process.stderr.write(`[false-failovers] ${profile}: ${minutes} min\n`);
  try {
    out.profiles[profile] = await runInHub<SteadyResult>([spec.system], "false-failovers-hub.ts", spec, { timeoutMs: (minutes + 15) * 60_000, onLine: (l) => process.stderr.write(`${l}\n`) });
  } catch (err) {
    failed = true;
    out.profiles[profile] = { error: (err as Error).message.slice(0, 4000) };
  }
  save();
}

const rows = Object.entries(out.profiles).map(([p, r]) =>
  "error" in r
    ? `| ${p} | error: ${r.error.split("\n")[0]} |`
    : `| ${p} | ${r.minutes} | ${r.bursts} | ${r.holderChanges} | ${r.sessionDestroysByPeers} | ${r.falseFailovers} | ${r.nearMisses.peerSilences} / ${r.nearMisses.minorityVerdicts} | ${r.loadAverage.mean} (max ${r.loadAverage.max}) |`,
);
process.stdout.write(
  [
    "| profile | minutes | starvation bursts | holder changes | sessions destroyed by peers | false failovers | near misses (peer silences / minority verdicts) | load average mean |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    `written to ${values.out}`,
    "",
  ].join("\n"),
);
process.exit(failed ? 1 : 0);
