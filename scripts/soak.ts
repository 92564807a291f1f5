/**
 * Bounded soak: 3 agents, 20 routes in 4 tables, a 3-server Consul cluster, moto behind the
 * fault proxy, each agent reaching its Consul client agent through a relay that can lose single
 * answers. Random faults one after another (a holder's check failing, SIGKILL + restart,
 * SIGTERM + restart, throttling bursts, drift written behind the agents' backs, and from issue
 * #14: lost Consul answers, an EC2 read outage, IAM denial on one node, a Consul agent crash
 * during a release, power-off of a preferred-AZ peer); after each, the invariants are checked:
 *   1. every route has one holder in Consul, and the holder's session belongs to the Consul
 *      node of the instance its value names;
 *   2. every table converges to its route's holder;
 *   3. no route write (CreateRoute/ReplaceRoute executed by moto) from a node that was not
 *      the route's latest acquirer at that moment, nor after its own hold ended;
 *   4. SIGTERM ends an agent with exit code 0; no agent exits unasked;
 *   5. agent RSS stays under the stated bound;
 *   6. the liveness invariants of issue #14 (test/support/faults/invariants.ts), over a record
 *      taken every 500 ms all along: a key held longer than the failover bound ⇒ the route
 *      points at its holder or the holder is releasing; every agent's /status holds equal
 *      Consul's within 2 s; at most one writer per route.
 *
 *   npm run soak [-- --minutes 20 --seed 42 --rss-bound-mib 300]    (writes docs/benchmarks/soak.json)
 */
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DescribeInternetGatewaysCommand, EC2Client, ReplaceRouteCommand } from "@aws-sdk/client-ec2";
import { EMULATOR_AWS } from "../test/support/moto.js";
import { parse, stringify } from "yaml";
import { startAemm, type StartedAemm } from "../test/support/aemm.js";
import { consulHttp } from "../test/support/consul.js";
import { startSimCluster, type SimCluster, type SimNode } from "../test/support/cluster.js";
import { waitUntil } from "../test/support/process.js";
import { InvariantRecorder } from "../test/support/faults/recorder.js";
import { interleavedWriters, type Violation as LivenessViolation } from "../test/support/faults/invariants.js";
import { startHttpRelay, type StartedHttpRelay } from "../test/support/http-relay.js";
import { consulRestartDuringRelease, ec2ReadOutage, iamDenial, lostConsulAnswer, powerOff, type SoakFaultContext } from "./lib/soak-faults.js";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "20" },
    seed: { type: "string" },
    "rss-bound-mib": { type: "string", default: "300" },
    /** Comma-separated fault classes to draw from (default: all), e.g. to try one class. */
    faults: { type: "string" },
  },
});
const MINUTES = Number(args.minutes);
const SEED = args.seed ? Number(args.seed) : Date.now() % 1_000_000;
const RSS_BOUND_MIB = Number(args["rss-bound-mib"]);
/** aws.writeTimeout (2 s) + margin: how long after its hold ends a node's in-flight write may still arrive. */
const WRITE_GRACE_MS = 2500;
/** ISO log timestamps carry milliseconds; the proxy uses Date.now(). */
const CLOCK_SLACK_MS = 5;
/**
 * Liveness invariant bounds: a held key must be served within 30 s (a refused write is tried
 * three times with back-off before the route is given up; lock-delay 3 s; restarts); a
 * former holder may not write within lock-delay (3 s) of another node's write.
 */
const BOUNDS = { failoverBoundMs: 30_000, holdsToleranceMs: 2000, writeWindowMs: 3000 };
const RECORD_INTERVAL_MS = 500;
/** The self-test's intruder write and the holder's repair are a reconcile (2 s) or two apart. */
const SELF_TEST_WRITE_WINDOW_MS = 10_000;

const TABLES = ["soak-a1", "soak-a2", "soak-b1", "soak-b2"];
const DESTINATIONS = ["0.0.0.0/0", "198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "100.64.0.0/16"];
const ROUTES = TABLES.flatMap((table, t) => DESTINATIONS.map((destination, d) => ({ name: `r${t}-${d}`, table: { tags: { Name: table } }, destination, checks: ["alive"] })));
const ROUTE_NAMES = ROUTES.map((r) => r.name);

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = mulberry32(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type FaultKind = "checkFail" | "sigkill" | "sigterm" | "throttle" | "drift" | "lostConsulAnswer" | "ec2ReadOutage" | "iamDenial" | "consulRestartDuringRelease" | "powerOff";
const ALL_FAULTS: FaultKind[] = ["checkFail", "sigkill", "sigterm", "throttle", "drift", "lostConsulAnswer", "ec2ReadOutage", "iamDenial", "consulRestartDuringRelease", "powerOff"];
const FAULTS: FaultKind[] = args.faults ? args.faults.split(",").map((f) => f.trim()) as FaultKind[] : ALL_FAULTS;
const unknownFaults = FAULTS.filter((f) => !ALL_FAULTS.includes(f));
if (unknownFaults.length) {
  console.error(`soak: --faults: unknown fault class(es) ${unknownFaults.join(", ")}; known: ${ALL_FAULTS.join(", ")}`);
  process.exit(2);
}

interface Violation {
  round: number;
  invariant: string;
  detail: string;
}

class Soak {
  readonly violations: Violation[] = [];
  /** Per node: times its agent process ended (SIGKILL, SIGTERM). */
  private readonly exits = new Map<string, number[]>();
  private readonly expectingExit = new Set<string>();
  readonly rssMax = new Map<string, number>();
  readonly convergeMs: Record<string, number[]> = {};
  readonly faultCounts: Record<string, number> = {};
  /** Per class: how many times the fault really hit (relay requests, refused EC2 calls, freed keys). */
  readonly faultsFired: Record<string, number> = {};
  /** Load average (1 min) at the end of each round. */
  readonly load: number[] = [];
  private checkedWrites = 0;

  constructor(private readonly sim: SimCluster) {}

  /** True while the detector self-test makes its deliberate intruding write. */
  selfTesting = false;

  violation(round: number, invariant: string, detail: string): void {
    this.violations.push({ round, invariant, detail });
    console.log(`  ${this.selfTesting ? "flagged (detector self-test, expected)" : "VIOLATION"} round ${round}: ${invariant}: ${detail}`);
  }

  /** Harness events that are not the agent's doing (a fixture process killed from outside). */
  readonly infraEvents: string[] = [];
  private readonly replacedAemm: StartedAemm[] = [];

  async start(node: SimNode): Promise<void> {
    await this.ensureMetadataMock(node);
    await this.sim.startAgent(node.name, ["--log-level", "info"]);
    await node.process!.waitForLine(/"step":"ready"/, 60_000);
  }

  /** The machine is shared: if this node's metadata mock died, start a new one and point the node's config at it. */
  private async ensureMetadataMock(node: SimNode): Promise<void> {
    const current = this.replacedAemm.find((a) => a.identity.instanceId === node.instanceId) ?? node.aemm;
    if (!current.process.hasExited) return;
    const fresh = await startAemm(node.identity);
    this.replacedAemm.push(fresh);
    const cfg = parse(readFileSync(node.configPath, "utf8")) as { imds: { endpoint: string } };
    cfg.imds.endpoint = fresh.endpoint;
    writeFileSync(node.configPath, stringify(cfg));
    this.infraEvents.push(`${new Date().toISOString()}: ${node.name}'s metadata mock had exited (${JSON.stringify(current.process.exit)}); restarted`);
    console.log(`  infra: ${this.infraEvents.at(-1)}`);
  }

  async stopFixtures(): Promise<void> {
    for (const a of this.replacedAemm) await a.stop();
  }

  /** A restart that does not reach "ready" is a violation; the node is tried once more so the soak goes on. */
  async restart(node: SimNode, round: number): Promise<void> {
    try {
      await this.start(node);
    } catch (err) {
      this.violation(round, "a restarted agent gets ready", (err as Error).message.slice(0, 2000));
      this.expectingExit.add(node.name);
      await node.process?.stop(10_000);
      this.exits.set(node.name, [...(this.exits.get(node.name) ?? []), Date.now()]);
      this.expectingExit.delete(node.name);
      await this.start(node);
    }
  }

  async stopAgent(node: SimNode, how: "SIGKILL" | "SIGTERM", round: number): Promise<void> {
    this.expectingExit.add(node.name);
    const proc = node.process!;
    if (how === "SIGKILL") await proc.kill();
    else {
      proc.signal("SIGTERM");
      const exit = await proc.waitForExit(30_000);
      if (exit.code !== 0) this.violation(round, "SIGTERM ends with exit 0", `${node.name} exited ${JSON.stringify(exit)}`);
    }
    this.exits.set(node.name, [...(this.exits.get(node.name) ?? []), Date.now()]);
    this.expectingExit.delete(node.name);
  }

  sampleRss(): void {
    for (const n of this.sim.nodes) {
      const mib = rssMiB(n.process?.pid);
      if (mib !== undefined) this.rssMax.set(n.name, Math.max(this.rssMax.get(n.name) ?? 0, mib));
    }
  }

  /** Invariants 1 and 2: resolves with the time it took, or records a violation. */
  async converge(round: number, fault: string, since: number): Promise<void> {
    const server = this.sim.consul.servers[0]!;
    const consulNodeOf = new Map(this.sim.nodes.map((n) => [n.instanceId, n.consul.node]));
    try {
      await waitUntil(
        "routes held by running agents and tables converged",
        async () => {
          const holders = await this.sim.holders();
          for (const r of ROUTES) {
            const h = holders.get(r.name)?.instanceId;
            const node = this.sim.nodeByInstance(h);
            if (!node?.process || node.process.hasExited) return undefined;
            if ((await this.sim.routeTarget(r.table.tags.Name, r.destination)) !== h) return undefined;
          }
          return true;
        },
        { timeoutMs: 120_000, intervalMs: 200 },
      );
      (this.convergeMs[fault] ??= []).push(Date.now() - since);
    } catch (err) {
      this.violation(round, "tables converge to the holders", (err as Error).message);
      return;
    }
    const kv = (await consulHttp("GET", `${server.httpAddr}/v1/kv/routeleader/${this.sim.cluster}/routes/?recurse&consistent`)).json as { Key: string; Session?: string; Value?: string }[];
    for (const e of kv) {
      if (!e.Session) continue;
      const holder = JSON.parse(Buffer.from(e.Value ?? "", "base64").toString() || "{}") as { instanceId?: string };
      const info = (await consulHttp("GET", `${server.httpAddr}/v1/session/info/${e.Session}`)).json as { Node: string }[] | null;
      const expected = consulNodeOf.get(holder.instanceId ?? "");
      if (!info?.[0] || info[0].Node !== expected) {
        this.violation(round, "one holder per route", `${e.Key}: session ${e.Session} on node ${info?.[0]?.Node ?? "(none)"}, value names ${holder.instanceId} (node ${expected})`);
      }
    }
  }

  /** Invariant 4, second half: every agent is running between faults; one that died is recorded and restarted. */
  async checkUnexpectedExits(round: number): Promise<void> {
    for (const n of this.sim.nodes) {
      if (!n.process?.hasExited || this.expectingExit.has(n.name)) continue;
      this.violation(round, "no agent exits unasked", `${n.name} exited ${JSON.stringify(n.process.exit)}: ${n.process.output(10)}`);
      this.exits.set(n.name, [...(this.exits.get(n.name) ?? []), Date.now()]);
      await this.restart(n, round);
    }
  }

  /** Invariant 3 over every route write moto executed so far. */
  checkWrites(round: number): void {
    const routeOf = new Map(ROUTES.map((r) => [`${this.sim.tableIds.get(r.table.tags.Name)} ${r.destination}`, r.name]));
    const holds = this.holdIntervals();
    const writes = this.sim.proxy!.calls({ mutating: true }).filter((c) => !c.injected && (c.action === "CreateRoute" || c.action === "ReplaceRoute"));
    for (const w of writes.slice(this.checkedWrites)) {
      const route = routeOf.get(`${w.params.RouteTableId} ${w.params.DestinationCidrBlock}`);
      if (!route) continue;
      const ofRoute = holds.filter((h) => h.route === route && h.from <= w.time - CLOCK_SLACK_MS).sort((a, b) => a.from - b.from);
      const latest = ofRoute[ofRoute.length - 1];
      if (!latest || latest.node !== w.caller) {
        this.violation(round, "no write from a non-holder", `${w.action} ${route} by ${w.caller} at ${new Date(w.time).toISOString()}; latest acquirer ${latest?.node ?? "none"}\n${this.eventsAround(route, w.time)}`);
      } else if (w.time > latest.to + WRITE_GRACE_MS) {
        this.violation(round, "no write after the hold ended", `${w.action} ${route} by ${w.caller} at ${new Date(w.time).toISOString()}, hold ended ${new Date(latest.to).toISOString()}`);
      }
    }
    this.checkedWrites = writes.length;
  }

  /** Every node's log lines about a route within 20 s before a time: what a violation needs to be understood. */
  eventsAround(route: string, time: number, withinMs = 20_000): string {
    const lines = this.sim.nodes.flatMap((n) => n.events.filter((e) => e.route === route && Math.abs(Date.parse(e.time) - time) < withinMs).map((e) => `    ${e.time} ${n.name} ${e.event ?? ""} ${e.msg} ${JSON.stringify({ reason: e.reason, lockIndex: e.lockIndex, action: e.action })}`));
    return lines.sort().slice(-40).join("\n");
  }

  /** [acquired, released | lost | process end] per node and route, from the agents' own logs. */
  private holdIntervals(): { node: string; route: string; from: number; to: number }[] {
    const out: { node: string; route: string; from: number; to: number }[] = [];
    for (const n of this.sim.nodes) {
      const ends = [...(this.exits.get(n.name) ?? [])].sort((a, b) => a - b);
      const open = new Map<string, number>();
      const closeAllBefore = (t: number) => {
        while (ends.length && ends[0]! <= t) {
          const end = ends.shift()!;
          for (const [route, from] of open) out.push({ node: n.name, route, from, to: end });
          open.clear();
        }
      };
      for (const e of n.events) {
        if (!e.route || !e.event) continue;
        const t = Date.parse(e.time);
        closeAllBefore(t);
        if (e.event === "acquired") open.set(e.route, t);
        if ((e.event === "released" || e.event === "lost") && open.has(e.route)) {
          out.push({ node: n.name, route: e.route, from: open.get(e.route)!, to: t });
          open.delete(e.route);
        }
      }
      closeAllBefore(Number.MAX_SAFE_INTEGER);
      for (const [route, from] of open) out.push({ node: n.name, route, from, to: Number.MAX_SAFE_INTEGER });
    }
    return out;
  }

  get writesChecked(): number {
    return this.checkedWrites;
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
}

async function main(): Promise<void> {
  console.log(`soak: ${MINUTES} min, seed ${SEED}, 3 agents × ${ROUTES.length} routes in ${TABLES.length} tables, RSS bound ${RSS_BOUND_MIB} MiB`);
  const sim = await startSimCluster({
    cluster: "soak",
    nodes: [
      { name: "n1", az: "us-east-1a", http: true },
      { name: "n2", az: "us-east-1b", http: true },
      { name: "n3", az: "us-east-1a", http: true },
    ],
    tables: TABLES.map((name) => ({ name, az: name.includes("-a") ? "us-east-1a" : "us-east-1b" })),
    routes: ROUTES,
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "500ms", timeout: "400ms", rise: 1, fall: 2 } },
    extra: { reconcileInterval: "2s", logLevel: "info", policy: { standbyDelay: "5s", failbackAfter: "10s", holdDown: "20s" } },
    faultProxy: true,
  });
  const soak = new Soak(sim);
  const relays = new Map<string, StartedHttpRelay>();
  for (const n of sim.nodes) {
    const relay = await startHttpRelay({ upstream: n.consul.httpAddr });
    relays.set(n.name, relay);
    n.patchConfig({ consul: { address: relay.endpoint } });
  }
  const faultContext: SoakFaultContext = {
    sim,
    relays,
    routes: ROUTES.map((r) => ({ name: r.name, table: r.table.tags.Name, tableAz: r.table.tags.Name.includes("-a") ? "us-east-1a" : "us-east-1b", destination: r.destination })),
    random,
    igw: () => igwOf(sim),
    killAgent: (node) => soak.stopAgent(node, "SIGKILL", round),
    restartAgent: (node) => soak.restart(node, round),
  };
  const recorder = new InvariantRecorder(sim, Object.fromEntries(ROUTES.map((r) => [r.name, { table: r.table.tags.Name, destination: r.destination }])), RECORD_INTERVAL_MS);
  /** Round number → when it started, to say in which round a liveness violation began. */
  const roundStarts: number[] = [];
  const roundAt = (t: number) => Math.max(0, roundStarts.findLastIndex((s) => s <= t));
  const liveness = { checkedUpTo: 0, found: [] as LivenessViolation[], selfTest: "not run" };
  /** Checks the record so far; new violations are reported once (by invariant, route, node, start). */
  /** A violation names a route, or for the write checks "<table id> <destination>": the route's name either way, for its log lines. */
  const routeNameOf = (route: string) => ROUTES.find((r) => r.name === route || `${sim.tableIds.get(r.table.tags.Name)} ${r.destination}` === route)?.name ?? route;
  const checkLiveness = (until = Number.POSITIVE_INFINITY) => {
    const seen = new Set(liveness.found.map((v) => `${v.invariant}|${v.route}|${v.node}|${v.from}`));
    for (const v of recorder.violations(BOUNDS).filter((x) => x.from < until)) {
      const key = `${v.invariant}|${v.route}|${v.node}|${v.from}`;
      if (seen.has(key)) continue;
      seen.add(key);
      liveness.found.push(v);
      const node = sim.nodeByInstance(v.node) ?? sim.nodes.find((n) => n.name === v.node);
      soak.violation(roundAt(v.from), `liveness: ${v.invariant}`, `${v.route} ${node?.name ?? v.node ?? ""} ${new Date(v.from).toISOString()}..${new Date(v.to).toISOString()}: ${v.detail}\n${soak.eventsAround(routeNameOf(v.route), v.from, 8000)}`);
    }
  };
  let detectorSelfTest: string = "not run";
  const started = Date.now();
  const deadline = started + MINUTES * 60_000;
  let round = 0;
  roundStarts.push(started);
  try {
    for (const n of sim.nodes) n.setHealthy(true);
    await Promise.all(sim.nodes.map((n) => soak.start(n)));
    await soak.converge(0, "coldStart", started);
    recorder.start();
    soak.sampleRss();
    while (Date.now() < deadline) {
      round++;
      roundStarts[round] = Date.now();
      const fault = pick(FAULTS);
      soak.faultCounts[fault] = (soak.faultCounts[fault] ?? 0) + 1;
      const holders = await sim.holders();
      const target = sim.nodeByInstance(pick(ROUTE_NAMES.map((r) => holders.get(r)?.instanceId).filter(Boolean))) ?? pick(sim.nodes);
      const faultAt = Date.now();
      let detail = "";
      switch (fault) {
        case "checkFail": {
          const ms = 2000 + Math.floor(random() * 6000);
          detail = `${target.name} check fails for ${ms} ms`;
          target.setHealthy(false);
          await sleep(ms);
          target.setHealthy(true);
          break;
        }
        case "sigkill": {
          detail = `${target.name} SIGKILL, restart`;
          await soak.stopAgent(target, "SIGKILL", round);
          await sleep(1000 + Math.floor(random() * 4000));
          await soak.restart(target, round);
          break;
        }
        case "sigterm": {
          detail = `${target.name} SIGTERM, restart`;
          await soak.stopAgent(target, "SIGTERM", round);
          await sleep(500 + Math.floor(random() * 3000));
          await soak.restart(target, round);
          break;
        }
        case "throttle": {
          const n = 5 + Math.floor(random() * 30);
          detail = `throttle ${n} DescribeRouteTables, ${Math.ceil(n / 3)} ReplaceRoute/CreateRoute`;
          sim.proxy!.throttle("DescribeRouteTables", n);
          sim.proxy!.throttle("ReplaceRoute", Math.ceil(n / 3));
          sim.proxy!.throttle("CreateRoute", Math.ceil(n / 3));
          // The burst is spent by the agents' own traffic, plus a drift so writes are needed.
          await sim.ec2.send(new ReplaceRouteCommand({ RouteTableId: sim.tableIds.get(pick(TABLES)), DestinationCidrBlock: pick(DESTINATIONS), GatewayId: await igwOf(sim) }));
          await sleep(3000);
          sim.proxy!.clearFaults();
          break;
        }
        case "drift": {
          const table = pick(TABLES);
          const dest = pick(DESTINATIONS);
          detail = `${table} ${dest} pointed at the internet gateway behind the agents' backs`;
          await sim.ec2.send(new ReplaceRouteCommand({ RouteTableId: sim.tableIds.get(table), DestinationCidrBlock: dest, GatewayId: await igwOf(sim) }));
          break;
        }
        case "lostConsulAnswer":
        case "ec2ReadOutage":
        case "iamDenial":
        case "consulRestartDuringRelease":
        case "powerOff": {
          const outcome =
            fault === "lostConsulAnswer" ? await lostConsulAnswer(faultContext, target)
            : fault === "ec2ReadOutage" ? await ec2ReadOutage(faultContext)
            : fault === "iamDenial" ? await iamDenial(faultContext, target)
            : fault === "consulRestartDuringRelease" ? await consulRestartDuringRelease(faultContext, target)
            : await powerOff(faultContext);
          detail = `${outcome.detail} (fired ${outcome.fired}×)`;
          if (outcome.fired > 0) soak.faultsFired[fault] = (soak.faultsFired[fault] ?? 0) + 1;
          break;
        }
      }
      if (!["lostConsulAnswer", "ec2ReadOutage", "iamDenial", "consulRestartDuringRelease", "powerOff"].includes(fault)) soak.faultsFired[fault] = (soak.faultsFired[fault] ?? 0) + 1;
      await soak.converge(round, fault, faultAt);
      await soak.checkUnexpectedExits(round);
      soak.checkWrites(round);
      soak.sampleRss();
      soak.load.push(loadavg()[0] as number);
      if (round % 5 === 0) checkLiveness();
      for (const [name, mib] of soak.rssMax) if (mib > RSS_BOUND_MIB) soak.violation(round, `RSS under ${RSS_BOUND_MIB} MiB`, `${name} reached ${mib} MiB`);
      const last = soak.convergeMs[fault]?.at(-1);
      console.log(`  round ${round} (${((Date.now() - started) / 60_000).toFixed(1)} min): ${fault}: ${detail}; converged in ${last ?? "—"} ms; writes checked ${soak.writesChecked}; RSS ${JSON.stringify(Object.fromEntries(soak.rssMax))}`);
    }
    await recorder.stop();
    checkLiveness();
    const selfTestFrom = Date.now();
    recorder.start();
    detectorSelfTest = await selfTest(sim, soak, round + 1);
    await recorder.stop();
    // The intruding write is followed by the holder's repair (within a reconcile or two): the one-writer check must flag the pair.
    const flagged = interleavedWriters(sim.proxy!.calls({ mutating: true }), SELF_TEST_WRITE_WINDOW_MS).filter((v) => v.to >= selfTestFrom);
    liveness.selfTest = flagged.length ? `passed: the one-writer check (window ${SELF_TEST_WRITE_WINDOW_MS} ms) flagged: ${flagged[0]!.detail}` : "FAILED: the intruding write and the repair were not flagged as two writers";
  } finally {
    await recorder.stop();
    const result = {
      benchmark: "soak",
      date: new Date().toISOString(),
      seed: SEED,
      minutes: Math.round(((Date.now() - started) / 60_000) * 10) / 10,
      setup: { agents: 3, routes: ROUTES.length, tables: TABLES.length, consul: "3 servers + 1 client per node", check: "command, every 500ms, rise 1, fall 2", reconcileInterval: "2s" },
      rounds: round,
      faults: Object.fromEntries(FAULTS.map((f) => [f, { injected: soak.faultCounts[f] ?? 0, fired: soak.faultsFired[f] ?? 0 }])),
      violations: soak.violations,
      detectorSelfTest,
      liveness: {
        bounds: BOUNDS,
        recordIntervalMs: RECORD_INTERVAL_MS,
        samples: recorder.consulSamples.length,
        statusReports: recorder.reports.length,
        violations: liveness.found.length,
        byInvariant: Object.fromEntries(["heldNotServed", "holdsDisagree", "twoWriters"].map((k) => [k, liveness.found.filter((v) => v.invariant === k).length])),
        detectorSelfTest: liveness.selfTest,
      },
      loadAverage1m: soak.load.length ? { mean: Math.round((soak.load.reduce((a, b) => a + b, 0) / soak.load.length) * 100) / 100, max: Math.max(...soak.load) } : undefined,
      infraEvents: soak.infraEvents,
      routeWritesChecked: soak.writesChecked,
      ec2Calls: sim.proxy!.calls().length,
      convergeMs: Object.fromEntries(Object.entries(soak.convergeMs).map(([k, v]) => [k, { n: v.length, p50: percentile(v, 50), p95: percentile(v, 95), max: Math.max(...v) }])),
      rss: { boundMiB: RSS_BOUND_MIB, maxMiB: Object.fromEntries(soak.rssMax) },
    };
    const out = join(dirname(fileURLToPath(import.meta.url)), "..", "docs", "benchmarks", "soak.json");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`soak: ${round} rounds, ${soak.violations.length} violation(s), ${soak.writesChecked} route writes checked; max RSS ${JSON.stringify(Object.fromEntries(soak.rssMax))} MiB; written to ${out}`);
    await sim.stop();
    await soak.stopFixtures();
    for (const r of relays.values()) await r.stop();
  }
  if (soak.violations.length || !detectorSelfTest.startsWith("passed") || !liveness.selfTest.startsWith("passed")) process.exitCode = 1;
}

/**
 * Proves invariant 3 can fail: a ReplaceRoute sent as a node that does not hold the route
 * (through the proxy, under that node's caller name) must be flagged. The flag is taken out
 * of the violation list; the holder's reconcile repairs the route.
 */
async function selfTest(sim: SimCluster, soak: Soak, round: number): Promise<string> {
  const holders = await sim.holders();
  const route = ROUTES[0]!;
  const holder = holders.get(route.name)?.instanceId;
  const intruder = sim.nodes.find((n) => n.instanceId !== holder)!;
  const client = new EC2Client({ ...EMULATOR_AWS, endpoint: sim.proxy!.endpointFor(intruder.name), maxAttempts: 1 });
  try {
    await client.send(new ReplaceRouteCommand({ RouteTableId: sim.tableIds.get(route.table.tags.Name), DestinationCidrBlock: route.destination, InstanceId: intruder.instanceId }));
  } finally {
    client.destroy();
  }
  const before = soak.violations.length;
  soak.selfTesting = true;
  soak.checkWrites(round);
  soak.selfTesting = false;
  const flagged = soak.violations.splice(before);
  await soak.converge(round, "selfTest", Date.now());
  return flagged.some((v) => v.invariant === "no write from a non-holder" && v.detail.includes(intruder.name)) ? `passed: a write by ${intruder.name} to ${route.name} (held by another node) was flagged` : `FAILED: the intruding write was not flagged (${JSON.stringify(flagged)})`;
}

let igw: string | undefined;
async function igwOf(sim: SimCluster): Promise<string> {
  if (igw) return igw;
  const out = await sim.ec2.send(new DescribeInternetGatewaysCommand({ Filters: [{ Name: "attachment.vpc-id", Values: [sim.vpcId] }] }));
  igw = out.InternetGateways?.[0]?.InternetGatewayId as string;
  return igw;
}

await main();
