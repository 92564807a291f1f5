/**
 * Footprint benchmark of the agent as shipped: the esbuild bundle (`npm run build` → dist/)
 * on plain node, no tsx. One node holding 20 routes, then one holding 200, each against real
 * Consul (3 servers + the node's client agent), moto and the metadata mock. Measures start to
 * ready (spawn → the agent's `ready` log line, and → every route written), RSS after
 * `--minutes` of holding, and the steady CPU (utime + stime from /proc over the second half).
 *
 *   npm run bench:footprint [-- --minutes 10] [--node-flags "…"] [--agent-env "…"]   (writes docs/benchmarks/footprint.json)
 *
 * --node-flags: the V8 flags the agent runs with; default the shipped ones (NODE_FLAGS of
 * scripts/build-agent.mjs); "" for none. --agent-env "K=V …": its environment (default the
 * shipped AGENT_ENV: glibc's mmap threshold); "" for none.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { consulVersion } from "../test/support/binaries.js";
import { startSimCluster } from "../test/support/cluster.js";
import { waitUntil } from "../test/support/process.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
// @ts-expect-error -- a plain .mjs script without type declarations
const { NODE_FLAGS, AGENT_ENV } = (await import("./build-agent.mjs")) as { NODE_FLAGS: string[]; AGENT_ENV: Record<string, string> };
const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    "node-flags": { type: "string", default: NODE_FLAGS.join(" ") },
    "agent-env": { type: "string", default: Object.entries(AGENT_ENV).map(([k, v]) => `${k}=${v}`).join(" ") },
  },
});
const agentEnv = args["agent-env"] ? args["agent-env"].split(" ") : [];
const MINUTES = Number(args.minutes);
if (!(MINUTES > 0)) throw new Error(`--minutes ${args.minutes}: a positive number`);
const CLK_TCK = 100;
/** Starts measured for start → ready (the median is reported); the last one is the held run's. */
const READY_SAMPLES = 4;

function procStats(pid: number): { rssKib: number; cpuTicks: number } {
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { rssKib: Number(rss?.[1] ?? 0), cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;

/** The agent's Consul requests so far, by operation (routeleader_consul_requests_total on its /metrics). */
async function consulRequests(agentUrl: string): Promise<Map<string, number>> {
  const res = await fetch(`${agentUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${agentUrl}/metrics: HTTP ${res.status}`);
  const byOp = new Map<string, number>();
  for (const m of (await res.text()).matchAll(/^routeleader_consul_requests_total\{([^}]*)\} (\S+)$/gm)) {
    const op = /op="([^"]*)"/.exec(m[1]!)?.[1] ?? "unknown";
    byOp.set(op, (byOp.get(op) ?? 0) + Number(m[2]));
  }
  return byOp;
}

/** Requests a second by operation between two scrapes, busiest first. */
function requestRates(before: Map<string, number>, after: Map<string, number>, seconds: number): Record<string, number> {
  const rates = [...after].map(([op, n]) => [op, Math.round(((n - (before.get(op) ?? 0)) / seconds) * 100) / 100] as const);
  return Object.fromEntries(rates.filter(([, r]) => r > 0).sort((a, b) => b[1] - a[1]));
}

async function listen(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port };
}

async function measure(routeCount: number, healthPort: number) {
  const tables = routeCount / 10;
  const routes = Array.from({ length: tables }, (_, t) =>
    Array.from({ length: 10 }, (_, k) => ({ name: `t${t}-d${k}`, table: { tags: { Name: `fp-${t}` } }, destination: k === 0 ? "0.0.0.0/0" : `172.16.${k}.0/24`, checks: ["upstream"] })),
  ).flat();
  const sim = await startSimCluster({
    cluster: `fp${routeCount}`,
    // Its HTTP endpoint serves /metrics, where the bench reads the Consul requests it makes.
    nodes: [{ name: "n1", az: "us-east-1a", http: true }],
    tables: Array.from({ length: tables }, (_, t) => ({ name: `fp-${t}`, az: "us-east-1a" })),
    routes,
    checks: { upstream: { type: "tcp", host: "127.0.0.1", port: healthPort, every: "1s", rise: 1, fall: 3 } },
    extra: { logLevel: "info" },
  });
  const cli = ["env", ...agentEnv, process.execPath, ...(args["node-flags"] ? args["node-flags"].split(" ") : []), join(REPO, "dist", "agent", "cli.js")];
  try {
    // Start → ready, several times (one sample is at the mercy of whatever else the machine runs).
    const readySamples: number[] = [];
    for (let i = 0; i < READY_SAMPLES; i++) {
      const mark = sim.node("n1").events.length;
      const at = Date.now();
      const starting = await sim.startAgent("n1", ["--log-level", "info"], { cli });
      await starting.waitForEvent((e) => e.step === "ready", 60_000, mark);
      readySamples.push(Date.now() - at);
      await starting.process!.stop(15_000);
    }
    readySamples.sort((a, b) => a - b);
    const mark = sim.node("n1").events.length;
    const spawned = Date.now();
    const node = await sim.startAgent("n1", ["--log-level", "info"], { cli });
    const pid = node.process!.pid!;
    await node.waitForEvent((e) => e.step === "ready", 60_000, mark);
    readySamples.push(Date.now() - spawned);
    readySamples.sort((a, b) => a - b);
    const readyMs = readySamples[Math.floor(readySamples.length / 2)]!;
    // Converging is not the measure here: a run that does not write every route within the
    // measured minutes still reports its RSS, with how far it got.
    const end = spawned + MINUTES * 60_000;
    const progress = async () => {
      const holders = await sim.holders();
      let written = 0;
      for (let t = 0; t < tables; t++) if ((await sim.routeTarget(`fp-${t}`, "0.0.0.0/0")) === node.instanceId) written++;
      return { held: routes.filter((r) => holders.get(r.name)?.instanceId === node.instanceId).length, tablesWritten: written };
    };
    let writtenMs: number | null = null;
    while (Date.now() < end) {
      const p = await progress();
      if (p.held === routeCount && p.tablesWritten === tables) {
        writtenMs = Date.now() - spawned;
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    console.log(`  ${routeCount} routes: ready after ${readyMs} ms (median of ${readySamples.join(", ")}), every route held and written after ${writtenMs ?? "(not within the run)"} ms; holding until ${MINUTES} min`);
    const half = spawned + (MINUTES * 60_000) / 2;
    const samples: number[] = [];
    let cpuAtHalf: { ticks: number; at: number; requests: Map<string, number> } | undefined;
    const agentUrl = node.httpUrl as string;
    await waitUntil(
      `${MINUTES} minutes holding ${routeCount} routes`,
      async () => {
        if (node.process!.hasExited) throw new Error(`agent exited: ${node.process!.output(20)}`);
        const s = procStats(pid);
        samples.push(s.rssKib);
        if (!cpuAtHalf && Date.now() >= half) cpuAtHalf = { ticks: s.cpuTicks, at: Date.now(), requests: await consulRequests(agentUrl) };
        return Date.now() >= end ? true : undefined;
      },
      { timeoutMs: MINUTES * 60_000 + 60_000, intervalMs: 5_000 },
    );
    const last = procStats(pid);
    const secondHalfS = cpuAtHalf ? (Date.now() - cpuAtHalf.at) / 1000 : 0;
    const cpuPercent = cpuAtHalf ? ((last.cpuTicks - cpuAtHalf.ticks) / CLK_TCK / secondHalfS) * 100 : null;
    const requestsPerS = cpuAtHalf ? requestRates(cpuAtHalf.requests, await consulRequests(agentUrl), secondHalfS) : {};
    const atEnd = await progress();
    return {
      routes: routeCount,
      tables,
      start_to_ready_ms: readyMs,
      start_to_ready_samples_ms: readySamples,
      start_to_routes_written_ms: writtenMs,
      rss_mib_end: mib(last.rssKib),
      rss_mib_max: mib(Math.max(...samples)),
      steady_cpu_percent: cpuPercent === null ? null : Math.round(cpuPercent * 100) / 100,
      consul_requests_per_s: Math.round(Object.values(requestsPerS).reduce((a, b) => a + b, 0) * 100) / 100,
      consul_requests_per_s_by_op: requestsPerS,
      routes_held_at_end: atEnd.held,
      tables_written_at_end: atEnd.tablesWritten,
      load_average_at_end: loadavg().map((x) => Math.round(x * 100) / 100),
    };
  } finally {
    await sim.stop();
  }
}

async function main(): Promise<void> {
  console.log("footprint: building the shipped bundle (scripts/build-agent.mjs → dist/)");
  execFileSync(process.execPath, [join(REPO, "scripts", "build-agent.mjs")], { cwd: REPO, stdio: "inherit" });
  // GNU time's %M: the peak RSS of the process, in KiB.
  const validate = spawnSync("/usr/bin/time", ["-f", "%M", process.execPath, join(REPO, "dist", "agent", "cli.js"), "validate", "--config", join(REPO, "examples", "nat-2az.yaml")], { cwd: REPO, encoding: "utf8" });
  if (validate.status !== 0) throw new Error(`validate failed: ${validate.stderr}`);
  const validatePeakMib = mib(Number(validate.stderr.trim().split("\n").pop()));
  console.log(`  validate: peak RSS ${validatePeakMib} MiB`);
  const health = await listen();
  try {
    const twenty = await measure(20, health.port);
    const twoHundred = await measure(200, health.port);
    const result = {
      benchmark: "footprint",
      date: new Date().toISOString(),
      command: `npm run bench:footprint -- --minutes ${MINUTES}`,
      minutes: MINUTES,
      machine: `${cpus().length} vCPU shared with other jobs; every component on loopback`,
      agent: `${agentEnv.length ? `${agentEnv.join(" ")} ` : ""}node ${args["node-flags"]} dist/agent/cli.js (esbuild bundle, scripts/build-agent.mjs), plain node ${process.version}, log level info`,
      setup: {
        consul: `3 servers + 1 client agent (v${consulVersion()})`,
        ec2: "moto 5.2.5",
        metadata: "amazon-ec2-metadata-mock (IMDSv2)",
        check: "tcp to a local listener, every 1s",
        reconcileInterval: "30s (default)",
        http: "on, a loopback port (the default: /metrics, /status), /metrics read twice per run",
        profile: "default",
      },
      goals: { rss_mib_20_routes: 80, rss_mib_200_routes: 120, start_to_ready_ms: 1500, steady_cpu_percent: 1 },
      rss_mib_20_routes: twenty.rss_mib_end,
      rss_mib_200_routes: twoHundred.rss_mib_end,
      start_to_ready_ms: twenty.start_to_ready_ms,
      steady_cpu_percent: twenty.steady_cpu_percent,
      consul_requests_per_s: twenty.consul_requests_per_s,
      validate_peak_rss_mib: validatePeakMib,
      runs: [twenty, twoHundred],
      notes: "rss_mib_* is the RSS after `minutes` of holding every route (max over the run in runs[].rss_mib_max); steady_cpu_percent is one core's share over the second half of the 20-route run (utime+stime from /proc), and consul_requests_per_s the Consul requests it made a second over the same half (its routeleader_consul_requests_total, by op in runs[]); start_to_ready_ms is the median of " + (READY_SAMPLES + 1) + " starts (runs[].start_to_ready_samples_ms), each spawn → the agent's `ready` log line (identity read, Consul reached, tables resolved, service registered).",
    };
    const out = join(REPO, "docs", "benchmarks", "footprint.json");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify({ rss_mib_20_routes: result.rss_mib_20_routes, rss_mib_200_routes: result.rss_mib_200_routes, start_to_ready_ms: result.start_to_ready_ms, steady_cpu_percent: result.steady_cpu_percent, consul_requests_per_s: result.consul_requests_per_s }));
    console.log(`  written to ${out}`);
  } finally {
    health.server.close();
  }
}

await main();
