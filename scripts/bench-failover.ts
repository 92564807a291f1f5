import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { consulVersion } from "../test/support/binaries.js";
import type { LabResult, LabSpec } from "../test/support/faults/lab.js";
import { figures, markdownTable, ratioTable, splitBrainTable, svgChart } from "../test/support/faults/report.js";
import { runFaultLab } from "../test/support/faults/run.js";
import { SCENARIOS } from "../test/support/faults/scenarios.js";
import { SYSTEM_NAMES, type SystemName } from "../test/support/faults/systems.js";

/**
 * Failover benchmark: routeleader (default and fast profile, and routeleader-eip: the default
 * profile whose route's Elastic IP must follow the holder too), keepalived (stock and tuned) and `consul lock`
 * (default and tuned lock-delay), side by side in the same network namespaces against the same
 * moto. Writes docs/benchmarks/failover.json, docs/benchmarks/failover-timeline.svg and
 * docs/benchmarks.md, and prints the table.
 *
 *   npm run bench:failover -- [--trials 20] [--runs 1] [--scenarios a,b] [--systems a,b]
 *     [--trials-for consul-lock/host-power-off=10,agent-kill=5]   (by system/scenario, system or scenario)
 *     [--aws-like]   (the proxy adds EC2-like latency: ReplaceRoute 100–300 ms, Describe ~100 ms)
 */

const { values } = parseArgs({
  options: {
    trials: { type: "string", default: "20" },
    /** Run the whole lab this many times, one after another (fresh namespaces, Consul and moto each time); trials per run. */
    runs: { type: "string", default: "1" },
    scenarios: { type: "string", default: SCENARIOS.map((s) => s.name).join(",") },
    systems: { type: "string", default: SYSTEM_NAMES.join(",") },
    "trials-for": { type: "string", default: "" },
    /** EC2-like latency in the proxy: ReplaceRoute/CreateRoute 100–300 ms, Describe* 80–120 ms. */
    "aws-like": { type: "boolean", default: false },
    "out-dir": { type: "string", default: join(import.meta.dirname, "..", "docs") },
    /** Rebuild the pages from a saved failover-trials.json instead of running the lab. */
    from: { type: "string" },
    /** With --from: the command that ran the lab, for the page. */
    command: { type: "string" },
  },
});

const systems = values.systems.split(",") as SystemName[];
for (const s of systems) if (!SYSTEM_NAMES.includes(s)) throw new Error(`unknown system ${s} (known: ${SYSTEM_NAMES.join(", ")})`);
const spec: LabSpec = {
  systems,
  scenarios: values.scenarios.split(","),
  trials: Number(values.trials),
  awsLike: values["aws-like"],
  trialsFor: Object.fromEntries(
    values["trials-for"]
      .split(",")
      .filter(Boolean)
      .map((kv) => {
        const [k, v] = kv.split("=");
        return [k as string, Number(v)];
      }),
  ),
};
const command = values.command ?? `npm run bench:failover -- ${process.argv.slice(2).join(" ")}`.trim();
const loadBefore = loadavg()[0]!.toFixed(1);
const RUNS = Number(values.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs ${values.runs}: a positive whole number`);

/** The lab RUNS times in a row; each LabRun tagged with its run when there are several. */
async function runLabs(): Promise<LabResult> {
  const results: LabResult[] = [];
  for (let run = 1; run <= RUNS; run++) {
    if (RUNS > 1) process.stderr.write(`[bench] run ${run} of ${RUNS}\n`);
    // A lab that fails to start (e.g. a port taken between probe and bind) is started once more;
    // a second failure ends the benchmark with the runs done so far, said in the output.
    let r: LabResult | undefined;
    for (let attempt = 1; attempt <= 2 && !r; attempt++) {
      try {
        r = await runFaultLab(spec, { timeoutMs: 4 * 60 * 60_000, onLine: (l) => process.stderr.write(`${l}\n`) });
      } catch (err) {
        process.stderr.write(`[bench] run ${run}, attempt ${attempt} failed: ${(err as Error).message.split("\n")[0]}\n`);
      }
    }
    if (!r) {
      if (!results.length) throw new Error(`run ${run}: the lab failed twice`);
      process.stderr.write(`[bench] stopping after ${results.length} of ${RUNS} runs\n`);
      break;
    }
    results.push(RUNS > 1 ? { ...r, runs: r.runs.map((x) => ({ ...x, run })) } : r);
  }
  return { runs: results.flatMap((r) => r.runs), startedAt: results[0]!.startedAt, finishedAt: results[results.length - 1]!.finishedAt };
}

const result: LabResult = values.from ? (JSON.parse(readFileSync(values.from, "utf8")) as LabResult) : await runLabs();
const table = figures(result);

const outDir = values["out-dir"];
mkdirSync(join(outDir, "benchmarks"), { recursive: true });
writeFileSync(join(outDir, "benchmarks", "failover.json"), `${JSON.stringify(table, null, 2)}\n`);
writeFileSync(join(outDir, "benchmarks", "failover-timeline.svg"), `${svgChart(result, table)}\n`);
writeFileSync(join(outDir, "benchmarks", "failover-trials.json"), `${JSON.stringify(result, null, 1)}\n`);

const violations = result.runs.flatMap((r) => [...r.trials.flatMap((t) => t.violations.map((v) => `${r.scenario} / ${r.system}: ${v}`)), ...(r.error ? [`${r.scenario} / ${r.system}: ${r.error}`] : [])]);
const md = `# Failover benchmark

Produced by \`${command}\` (${result.startedAt} – ${result.finishedAt}${values.from ? "" : `; 2 cores shared with other work, 1-minute load average ${loadBefore} at the start and ${loadavg()[0]!.toFixed(1)} at the end`}).
Raw figures: [failover.json](benchmarks/failover.json); every trial with its timeline: [failover-trials.json](benchmarks/failover-trials.json).

## Setup

- 3 hosts, each a network namespace with a Consul client agent, its own metadata mock and the system
  under test; 3 Consul servers in their own namespaces; moto and the fault proxy in a hub namespace
  that holds the bridge (198.18.0.0/24). Every route write goes through the proxy, which logs the caller.
- EC2: ${spec.awsLike ? "**AWS-like mode**: the proxy holds ReplaceRoute/CreateRoute 100–300 ms and every Describe 80–120 ms, so no system is flattered by moto's instant answers" : "moto's own answer times (a few ms; run with \`--aws-like\` for EC2-like latency)"}.
- Time = from the fault to the first 20 ms poll of moto where the route points at another live,
  healthy host. p50 / p95 / p99 / max in seconds; n = trials. A trial where the route never reached
  a live, healthy host within 90 s is counted as never converged and enters the percentiles at 90 s
  (censored, never dropped). failover.json also has the election part (fault → the new holder's own
  claim: lock acquired, VRRP MASTER) and the write part (claim → route observed) apart, and the
  1-minute load average at each trial's fault. Lanes run one after another, never side by side.
- Same health check everywhere: a command check on a file, every 1 s, fall 3, rise 1
  (routeleader \`checks\`; keepalived \`track_script\`; the \`consul lock\` child polls it and exits).
- **routeleader-default**: defaults (lock-delay 1.2 s, write timeout 700 ms, peer heartbeats every
  200 ms, silent after 4 missed), Consul's default gossip.
  **routeleader-fast**: \`election.profile: fast\` (lock-delay 650 ms, write timeout 400 ms, peer
  heartbeats every 100 ms, silent after 3 missed) and the fast gossip the bootstrap writes (probe
  500 ms, timeout 250 ms, suspicion_mult 3).
- **keepalived** 2.2: VRRP unicast between the namespaces, advert 1 s, \`nopreempt\`, a \`notify\`
  script (Python + boto3, ~0.4 s to start like the AWS CLI) calling ReplaceRoute through the proxy.
- **keepalived-tuned** 2.2: VRRPv3, advert 0.5 s, priorities 50 apart (100/150/200), \`nopreempt\`,
  a writer started once through \`notify_fifo\` (Python + boto3, its EC2 client made and warmed with
  one DescribeRouteTables before the first state change), so a takeover is one ReplaceRoute.
- **consul-lock**: the real \`consul lock\` (Consul ${consulVersion()}) around the same route-replacing child;
  session defaults (lock-delay 15 s, serfHealth), default gossip.
- **consul-lock-tuned**: \`consul lock\` has no lock-delay flag, so a small script runs the same loop
  as its Go \`api.Lock\` with a session LockDelay of 1 s, a 500 ms lock-delay retry (api.Lock: 5 s),
  and the fast gossip.
- Agent SIGKILL, host alive: routeleader's agent; every keepalived process (no priority-0 advert,
  so the backups wait out the master-down interval); the lock process and its child (the session
  lives until its TTL lapses: \`consul lock\` 15 s, and Consul may take up to twice that).
- Scenarios measured for routeleader only (no baseline equivalent): Consul agent SIGKILL, Consul
  minority partition and quorum loss (the route must stay), EC2 throttling and 5xx bursts during
  a health-check failover, instance terminated in moto (and powered off).

## Fault → route converged (p50 / p95 / p99 / max, seconds)

${markdownTable(table)}

"stays": the scenario must not move the route (it did not, unless violations are listed).

## ours / baseline

${ratioTable(table)}

## Split-brain writes

Route writes by a host that did not hold the route at that moment (it had not acquired it, had
released it, or another host had acquired it since), from the proxy's log against each system's
own claims (routeleader's acquired/released/lost events, keepalived's notify states, the lock
child's start and exit). The holder partition keeps the old holder cut off (but able to reach the
EC2 API) for 3 s after the failover.

${splitBrainTable(table)}

## Invariant violations

${violations.length ? violations.map((v) => `- ${v}`).join("\n") : "None: one holder per route in Consul, the route on a live healthy holder after every trial, no write from a non-holder, at most one route change per failover."}

## Timeline

![failover timeline](benchmarks/failover-timeline.svg)
`;
writeFileSync(join(outDir, "benchmarks.md"), md);
process.stdout.write(`${markdownTable(table)}\n\n${ratioTable(table)}\n\n${splitBrainTable(table)}\n`);
if (violations.length) process.stdout.write(`\nviolations:\n${violations.join("\n")}\n`);
