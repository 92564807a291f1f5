import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { DataplaneLab, FAULTS, KEEPALIVED_SKIPS, type FaultName, type LabOptions, type TrialResult } from "../test/support/dataplane/lab.js";
import { assertNetnsAllowed } from "../test/support/netns.js";

/**
 * Data-plane outage benchmark: what applications feel. For each fault class and contender, the
 * longest gap in a 100 packets/s UDP probe stream from a private client to an internet host,
 * next to the control-plane figure (fault → new holder's ReplaceRoute) and the simulated VPC
 * router's own lag (ReplaceRoute → data plane changed; reported, subtracted nowhere). Same-AZ
 * mode also opens long-lived TCP echo streams and counts those that survive. The fault lab's
 * keepalived contenders run in the same simulator, in the same run, for the faults that apply.
 * Writes docs/benchmarks/dataplane.json.
 *
 *   npm run bench:dataplane -- [--trials 5] [--faults a,b] [--contenders a,b] [--connections 10] [--until 11:15]
 *
 * --until HH:MM (UTC): no trial starts after that time; the cells not run are listed as cut.
 */

const CONTENDERS: Record<string, LabOptions> = {
  "routeleader-default": {},
  "routeleader-same-az": { sameAz: true },
  keepalived: { contender: "keepalived" },
  "keepalived-tuned": { contender: "keepalived-tuned" },
};

const { values } = parseArgs({
  options: {
    trials: { type: "string", default: "5" },
    faults: { type: "string", default: FAULTS.join(",") },
    "same-az-faults": { type: "string", default: "graceful-stop,power-off" },
    contenders: { type: "string", default: Object.keys(CONTENDERS).join(",") },
    until: { type: "string" },
    connections: { type: "string", default: "10" },
    out: { type: "string", default: join(import.meta.dirname, "..", "docs", "benchmarks", "dataplane.json") },
  },
});

const trials = Number(values.trials);
if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials: a whole number of at least 1, not ${values.trials}`);
function untilMs(hhmm: string | undefined): number {
  if (hhmm === undefined) return Infinity;
  const m = /^(\d{2}):(\d{2})$/.exec(hhmm);
  if (!m) throw new Error(`--until: HH:MM (UTC), not ${hhmm}`);
  const d = new Date();
  d.setUTCHours(Number(m[1]), Number(m[2]), 0, 0);
  return d.getTime();
}
const until = untilMs(values.until);
const cut: { contender: string; scenario: FaultName; trials_run: number }[] = [];
const connections = Number(values.connections);
const log = (msg: string) => process.stderr.write(`[dataplane ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);

function percentile(values: number[], p: number): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number;
}
const stats = (xs: number[]) => ({ p50: percentile(xs, 0.5), p95: percentile(xs, 0.95), max: xs.length ? Math.max(...xs) : null });

interface Sample {
  outage_ms: number;
  control_plane_ms: number;
  write_ms: number;
  router_lag_ms: number;
  router_wait_ms: number;
  router_poll_p50_ms: number;
  router_poll_max_ms: number;
  event_loop_delay_max_ms: number;
  loadavg_1m: number;
  connections_survived?: number;
  connections_tried?: number;
}

interface Row {
  scenario: FaultName;
  contender: string;
  trials: number;
  outage_ms: ReturnType<typeof stats>;
  control_plane_ms: ReturnType<typeof stats>;
  router_lag_ms: ReturnType<typeof stats>;
  samples: Sample[];
  connections_survived?: number;
  connections_tried?: number;
  errors?: string[];
}

const rows: Row[] = [];
const skipped: { contender: string; scenario: FaultName; why: string }[] = [];
const startedAt = new Date().toISOString();
const loads: number[] = [loadavg()[0] as number];
const loadTimer = setInterval(() => loads.push(loadavg()[0] as number), 10_000);
/** The bench process hosts the fault proxy and the VPC router: a blocked event loop delays both. */
const eventLoop = monitorEventLoopDelay({ resolution: 10 });
eventLoop.enable();

function save(): void {
  mkdirSync(join(values.out, ".."), { recursive: true });
  const doc = {
    what: "Data-plane outage: the longest gap in a 100 packets/s UDP probe stream (client → NAT → internet echo) per fault class; control plane = fault → the new holder's ReplaceRoute answered; router lag = that answer → the simulated VPC router applied it (polls moto every 100 ms, the route table first; included in the outage, subtracted nowhere).",
    command: `npm run bench:dataplane -- ${process.argv.slice(2).join(" ")}`.trim(),
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      loadavg: loadavg(),
      loadavg_1m_during_run: { samples: loads.length, every_s: 10, min: Math.min(...loads), mean: Number((loads.reduce((a, b) => a + b, 0) / loads.length).toFixed(2)), max: Math.max(...loads) },
    },
    setup:
      "2 NAT instances in one AZ; moto behind the fault proxy. routeleader: default profile, data-path check every 200 ms, fall 2 (forwarding on in the NAT namespace), Consul 3 servers + 1 client per node on loopback. keepalived: the fault lab's contenders (test/support/faults/systems.ts) inside the NAT namespaces, VRRP unicast over a direct link between them, track_script `grep -qx 1 /proc/sys/net/ipv4/ip_forward` every 1 s, fall 3, rise 1 (the fault lab's timings), the writer calling EC2 through a relay at the router's address (a powered-off NAT cannot write)",
    fields: {
      control_plane_ms: "fault → the new holder's ReplaceRoute answered",
      write_ms: "that ReplaceRoute's arrival at the proxy → its answer (moto's time, inside control_plane_ms)",
      router_lag_ms: "ReplaceRoute answered → the router applied the route",
      router_wait_ms: "of the router lag: answered → the start of the router poll that saw it",
      router_poll_p50_ms: "the router's polls (the route table read from moto and applied, then the ENIs and addresses read through the proxy and applied) from the fault until the probes settled",
      event_loop_delay_max_ms: "the longest stall of the bench process's event loop during the trial (it hosts the fault proxy and the router)",
    },
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
      keepalived: "keepalived with a notify script (VRRP advert 1 s; on MASTER, boto3 ReplaceRoute in a fresh python process); MASQUERADE as routeleader-default",
      "keepalived-tuned": "keepalived, VRRPv3 advert 0.5 s, priorities 50 apart, a writer started once through notify_fifo with its EC2 client warm; MASQUERADE as routeleader-default",
    },
    skipped,
    ...(cut.length ? { cut: { until: values.until, cells: cut } } : {}),
    results: rows,
  };
  writeFileSync(values.out, `${JSON.stringify(doc, null, 2)}\n`);
}

async function runContender(contender: string, options: LabOptions, faults: FaultName[]): Promise<void> {
  const sameAz = !!options.sameAz;
  const lab = await DataplaneLab.start(options);
  try {
    for (const fault of faults) {
      const results: (TrialResult & { eventLoopMaxMs: number; load: number })[] = [];
      const errors: string[] = [];
      for (let i = 0; i < trials; i++) {
        if (Date.now() > until) {
          cut.push({ contender, scenario: fault, trials_run: i });
          log(`${contender} ${fault}: --until ${values.until} passed after ${i} trials`);
          break;
        }
        try {
          eventLoop.reset();
          const r = { ...(await lab.trial(fault, sameAz ? connections : 0)), eventLoopMaxMs: Math.round(eventLoop.max / 1e6), load: loadavg()[0] as number };
          results.push(r);
          log(
            `${contender} ${fault} #${i + 1}: outage ${r.outageMs} ms, control plane ${r.controlPlaneMs} ms (write ${r.writeMs}), router lag ${r.routerLagMs} ms (wait ${r.routerWaitMs}, polls p50 ${r.routerPollMs.p50} max ${r.routerPollMs.max}), event loop max ${r.eventLoopMaxMs} ms, load ${r.load.toFixed(1)}${r.connections ? `, connections ${r.connections.survived}/${r.connections.tried}` : ""}`,
          );
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
          write_ms: r.writeMs,
          router_lag_ms: r.routerLagMs,
          router_wait_ms: r.routerWaitMs,
          router_poll_p50_ms: r.routerPollMs.p50,
          router_poll_max_ms: r.routerPollMs.max,
          event_loop_delay_max_ms: r.eventLoopMaxMs,
          loadavg_1m: Number(r.load.toFixed(2)),
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
const faults = values.faults.split(",") as FaultName[];
for (const f of [...faults, ...values["same-az-faults"].split(",").filter(Boolean)]) if (!(FAULTS as readonly string[]).includes(f)) throw new Error(`unknown fault ${f}; known: ${FAULTS.join(", ")}`);
const contenders = values.contenders.split(",");
for (const c of contenders) if (!CONTENDERS[c]) throw new Error(`unknown contender ${c}; known: ${Object.keys(CONTENDERS).join(", ")}`);
for (const contender of contenders) {
  const options = CONTENDERS[contender] as LabOptions;
  let mine = options.sameAz ? (values["same-az-faults"].split(",").filter(Boolean) as FaultName[]) : faults;
  if (options.contender?.startsWith("keepalived")) {
    for (const f of mine) {
      const why = KEEPALIVED_SKIPS[f];
      if (why) skipped.push({ contender, scenario: f, why });
    }
    mine = mine.filter((f) => !KEEPALIVED_SKIPS[f]);
  }
  if (mine.length) await runContender(contender, options, mine);
}
clearInterval(loadTimer);
save();
log(`wrote ${values.out}`);
process.exit(0);
