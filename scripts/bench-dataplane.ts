import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DataplaneLab, FAULTS, type FaultName, type TrialResult } from "../test/support/dataplane/lab.js";
import { assertNetnsAllowed } from "../test/support/netns.js";

/**
 * Data-plane outage benchmark: what applications feel. For each fault class and contender, the
 * longest gap in a 100 packets/s UDP probe stream from a private client to an internet host,
 * next to the control-plane figure (fault → new holder's ReplaceRoute) and the simulated VPC
 * router's own lag (ReplaceRoute → data plane changed; reported, subtracted nowhere). Same-AZ
 * mode also opens long-lived TCP echo streams and counts those that survive.
 * Writes docs/benchmarks/dataplane.json.
 *
 *   npm run bench:dataplane -- [--trials 5] [--faults a,b] [--connections 10]
 */

const { values } = parseArgs({
  options: {
    trials: { type: "string", default: "5" },
    faults: { type: "string", default: FAULTS.join(",") },
    "same-az-faults": { type: "string", default: "graceful-stop,power-off" },
    connections: { type: "string", default: "10" },
    out: { type: "string", default: join(import.meta.dirname, "..", "docs", "benchmarks", "dataplane.json") },
  },
});

const trials = Number(values.trials);
const connections = Number(values.connections);
const log = (msg: string) => process.stderr.write(`[dataplane ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);

function percentile(values: number[], p: number): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number;
}
const stats = (xs: number[]) => ({ p50: percentile(xs, 0.5), p95: percentile(xs, 0.95), max: xs.length ? Math.max(...xs) : null });

interface Row {
  scenario: FaultName;
  contender: string;
  trials: number;
  outage_ms: ReturnType<typeof stats>;
  control_plane_ms: ReturnType<typeof stats>;
  router_lag_ms: ReturnType<typeof stats>;
  samples: { outage_ms: number; control_plane_ms: number; router_lag_ms: number; connections_survived?: number; connections_tried?: number }[];
  connections_survived?: number;
  connections_tried?: number;
  errors?: string[];
}

const rows: Row[] = [];
const startedAt = new Date().toISOString();

function save(): void {
  mkdirSync(join(values.out, ".."), { recursive: true });
  const doc = {
    what: "Data-plane outage: the longest gap in a 100 packets/s UDP probe stream (client → NAT → internet echo) per fault class; control plane = fault → the new holder's ReplaceRoute; router lag = ReplaceRoute → the simulated VPC router applied it (polls moto every 100 ms; included in the outage, subtracted nowhere).",
    command: `npm run bench:dataplane -- ${process.argv.slice(2).join(" ")}`.trim(),
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, loadavg: loadavg() },
    setup: "2 NAT instances in one AZ; routeleader default profile; data-path check every 200 ms, fall 2 (forwarding on in the NAT namespace); Consul 3 servers + 1 client per node on loopback; moto behind the fault proxy",
    faults: {
      "health-check": "forwarding turned off in the holder's NAT namespace (its data path is broken until the route moves)",
      "graceful-stop": "SIGTERM to the holder's agent; the NAT keeps forwarding",
      sigkill: "SIGKILL to the holder's agent; the NAT keeps forwarding",
      "power-off": "agent and Consul client frozen and killed, the NAT's links down, every process in its namespace killed",
      partition: "the holder's Consul client frozen (cut off from the cluster); the NAT keeps forwarding",
    },
    contenders: {
      "routeleader-default": "MASQUERADE to each NAT's own address (the bootstrap's rule): a failover changes the public source; TCP connections are reset",
      "routeleader-same-az": "sameAz mode: SNAT to a secondary IP that follows the holder with the route's EIP; conntrackd (FTFW, external cache off) syncs state over a dedicated link; nf_conntrack_tcp_loose=0",
    },
    not_measured: "keepalived baseline: not run in the data-plane simulator yet (its control-plane figures are in failover.json)",
    results: rows,
  };
  writeFileSync(values.out, `${JSON.stringify(doc, null, 2)}\n`);
}

async function runContender(contender: string, sameAz: boolean, faults: FaultName[]): Promise<void> {
  const lab = await DataplaneLab.start({ sameAz });
  try {
    for (const fault of faults) {
      const results: TrialResult[] = [];
      const errors: string[] = [];
      for (let i = 0; i < trials; i++) {
        try {
          const r = await lab.trial(fault, sameAz ? connections : 0);
          results.push(r);
          log(`${contender} ${fault} #${i + 1}: outage ${r.outageMs} ms, control plane ${r.controlPlaneMs} ms, router lag ${r.routerLagMs} ms${r.connections ? `, connections ${r.connections.survived}/${r.connections.tried}` : ""}`);
        } catch (err) {
          errors.push((err as Error).message.split("\n")[0] as string);
          log(`${contender} ${fault} #${i + 1} failed: ${(err as Error).message.split("\n")[0]}`);
        }
      }
      const conns = results.flatMap((r) => (r.connections ? [r.connections] : []));
      rows.push({
        scenario: fault,
        contender,
        trials: results.length,
        outage_ms: stats(results.map((r) => r.outageMs)),
        control_plane_ms: stats(results.map((r) => r.controlPlaneMs)),
        router_lag_ms: stats(results.map((r) => r.routerLagMs)),
        samples: results.map((r) => ({
          outage_ms: r.outageMs,
          control_plane_ms: r.controlPlaneMs,
          router_lag_ms: r.routerLagMs,
          ...(r.connections ? { connections_survived: r.connections.survived, connections_tried: r.connections.tried } : {}),
        })),
        ...(conns.length ? { connections_survived: conns.reduce((a, c) => a + c.survived, 0), connections_tried: conns.reduce((a, c) => a + c.tried, 0) } : {}),
        ...(errors.length ? { errors } : {}),
      });
      save();
    }
  } finally {
    await lab.stop();
  }
}

assertNetnsAllowed();
await runContender("routeleader-default", false, values.faults.split(",") as FaultName[]);
if (values["same-az-faults"]) await runContender("routeleader-same-az", true, values["same-az-faults"].split(",") as FaultName[]);
save();
log(`wrote ${values.out}`);
process.exit(0);
