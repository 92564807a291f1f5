import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { AllocateAddressCommand } from "@aws-sdk/client-ec2";
import { stringify } from "yaml";
import { PROFILE_DEFAULTS } from "../../../agent/config/load.js";
import { describeEip } from "../../../agent/routes/eip.js";
import { binaryPath } from "../binaries.js";
import { consulHttp } from "../consul.js";
import { EMULATOR_AWS } from "../moto.js";
import { nsWrap } from "../netns.js";
import { ManagedProcess } from "../process.js";
import { DESTINATION, type Host, type Lane, type World } from "./world.js";

/**
 * The systems compared, each started once per host: routeleader (default and fast profile, and
 * the default profile with the route's Elastic IP following the holder),
 * keepalived with a notify script, `consul lock` around a route-replacing child, and the same
 * lock loop with a tuned session lock-delay. Each reports claims (when a host believed it held
 * the route), which the invariants compare with the proxy's log of route writes.
 */

export interface Claim {
  host: string;
  t: number;
  kind: "acquire" | "release";
  detail?: string;
}

export interface FailoverSystem {
  readonly name: string;
  /** Its hosts, route table and Consul cluster. */
  readonly lane: Lane;
  start(h: Host): Promise<void>;
  /** The host runs the system and is ready to take over (a follower or the holder). */
  ready(h: Host): Promise<boolean>;
  running(h: Host): boolean;
  /** SIGTERM: a graceful stop. */
  terminate(h: Host): void;
  /** SIGKILL of the system's own process (the node stays up). */
  kill(h: Host): Promise<void>;
  stop(h: Host): Promise<void>;
  claims(): Claim[];
  /** The last lines its process on the host printed, for the message of a host that is not ready. */
  outputOf?(h: Host, lines: number): string;
  /** The host holding the route according to Consul, for lock-based systems. */
  consulHolder?(): Promise<string | undefined>;
  /** What the liveness invariants need (Consul's key and each agent's /status), for systems that report them. */
  observe?(): Promise<LaneObservation>;
  /**
   * Whatever else must follow the holder besides the route (routeleader-eip: the route's Elastic
   * IP) points at this host. A failover has converged when the route and this both have.
   */
  servedBy?(h: Host): Promise<boolean>;
  /** The shortest time in which the route may legitimately come back to a former writer (its lock-delay). */
  readonly writeWindowMs?: number;
}

/** One look at a lane's route: who holds the key in Consul, and what each running host says it holds. */
export interface LaneObservation {
  holder?: { instanceId: string; session: string; lockIndex: number };
  /** Per host that answered or is down: the routes its /status holds (undefined: no answer) and whether it is releasing. */
  reports: { instanceId: string; holds: string[] | undefined; releasing: boolean; unconfirmed: string[] }[];
}

/** What a system needs of the lab around it: the fault lab's World, or the data-plane lab (test/support/dataplane/lab.ts). */
export type SystemWorld = Pick<World, "ec2" | "endpointFor" | "hostByInstance">;

/** What the lab reads of an agent's /status. */
interface AgentStatus {
  routes: { route: string; phase: string; unconfirmed?: string; noSession?: string }[];
}

/** Each routeleader agent serves /status on its own namespace address, on this port. */
const STATUS_PORT = 9181;

const REPO = join(import.meta.dirname, "..", "..", "..");
const BASELINE = join(import.meta.dirname, "baseline");

export function python(): string {
  return join(dirname(binaryPath("moto")), "python");
}

const awsEnv = (h: Host) => ({
  ...process.env,
  AWS_ACCESS_KEY_ID: "testing",
  AWS_SECRET_ACCESS_KEY: "testing",
  AWS_REGION: EMULATOR_AWS.region,
  AWS_EC2_METADATA_SERVICE_ENDPOINT: h.aemm?.endpoint ?? "",
});

/** Claims appended by the baseline scripts, one `<epoch ms> acquire|release <detail>` a line. */
function readClaimFile(host: string, path: string): Claim[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [t, kind, detail] = line.split(" ");
      return { host, t: Number(t), kind: kind === "acquire" ? "acquire" : "release", ...(detail ? { detail } : {}) } as Claim;
    });
}

/** Which host's Consul session holds `key`, read with ?consistent from a live server. */
async function lockHolder(lane: Lane, key: string): Promise<string | undefined> {
  const server = lane.cluster.liveServer();
  const kv = await consulHttp("GET", `${server.httpAddr}/v1/kv/${key}?consistent`, undefined, 2000).catch((err: Error) => {
    if (/HTTP 404/.test(err.message)) return { json: [] };
    throw err;
  });
  const session = (kv.json as { Session?: string }[] | undefined)?.[0]?.Session;
  if (!session) return undefined;
  const info = await consulHttp("GET", `${server.httpAddr}/v1/session/info/${session}?consistent`, undefined, 2000);
  return (info.json as { Node?: string }[] | undefined)?.[0]?.Node;
}

async function hasSession(h: Host): Promise<boolean> {
  const res = await consulHttp("GET", `${h.cluster.liveServer().httpAddr}/v1/session/node/${h.name}`, undefined, 2000);
  return ((res.json as unknown[] | undefined) ?? []).length > 0;
}

abstract class ProcessSystem implements FailoverSystem {
  abstract readonly name: string;
  protected readonly procs = new Map<string, ManagedProcess>();
  protected readonly startedAt = new Map<string, number>();

  constructor(
    protected readonly world: SystemWorld,
    readonly lane: Lane,
  ) {}

  protected abstract spawn(h: Host): ManagedProcess;
  abstract ready(h: Host): Promise<boolean>;
  abstract claims(): Claim[];

  protected readonly wanted = new Set<string>();
  /** Restarted 1 s after it exits, as systemd's Restart=always would (only for the `consul lock` baselines). */
  protected readonly supervised: boolean = false;

  async start(h: Host): Promise<void> {
    if (this.running(h)) throw new Error(`${this.name} already runs on ${h.name}`);
    this.wanted.add(h.name);
    this.launch(h);
  }

  private launch(h: Host): void {
    this.startedAt.set(h.name, Date.now());
    const proc = this.spawn(h);
    this.procs.set(h.name, proc);
    if (!this.supervised) return;
    void proc.waitForExit(24 * 3600_000).then(() => {
      setTimeout(() => {
        if (this.wanted.has(h.name) && !h.poweredOff && this.procs.get(h.name) === proc) this.launch(h);
      }, 1000);
    }, () => undefined);
  }

  running(h: Host): boolean {
    const p = this.procs.get(h.name);
    return !!p && !p.hasExited;
  }

  terminate(h: Host): void {
    this.wanted.delete(h.name);
    this.procs.get(h.name)?.signal("SIGTERM");
  }

  async kill(h: Host): Promise<void> {
    this.wanted.delete(h.name);
    await this.procs.get(h.name)?.kill();
  }

  async stop(h: Host): Promise<void> {
    this.wanted.delete(h.name);
    await this.procs.get(h.name)?.stop(10_000);
  }

  outputOf(h: Host, lines: number): string {
    const proc = this.procs.get(h.name);
    if (!proc) return "not started";
    return `${proc.hasExited ? "exited" : "running"}: ${proc.output(lines)}`;
  }
}

/** The routeleader agent, one process per host, with a command check on the host's health file. */
export class Routeleader extends ProcessSystem {
  readonly name: string;
  private readonly events: Claim[] = [];

  /** routeleader-eip: the Elastic IP (allocated in moto at the first start) the route names. */
  private allocationId: string | undefined;

  constructor(
    world: SystemWorld,
    lane: Lane,
    readonly profile: "default" | "fast",
    readonly eip = false,
  ) {
    super(world, lane);
    this.name = eip ? "routeleader-eip" : `routeleader-${profile}`;
    if (eip) this.servedBy = async (h) => !!this.allocationId && (await describeEip(this.world.ec2, this.allocationId)).networkInterfaceId === h.identity.eniId;
  }

  override async start(h: Host): Promise<void> {
    if (this.eip && !this.allocationId) this.allocationId = (await this.world.ec2.send(new AllocateAddressCommand({ Domain: "vpc" }))).AllocationId;
    await super.start(h);
  }

  /** routeleader-eip only: the route's Elastic IP is on this host's network interface. */
  readonly servedBy?: (h: Host) => Promise<boolean>;

  protected spawn(h: Host): ManagedProcess {
    const config = {
      cluster: this.lane.name,
      region: EMULATOR_AWS.region,
      consul: { address: h.consul?.httpAddr },
      imds: { endpoint: h.aemm?.endpoint },
      aws: { endpoint: this.world.endpointFor(h) },
      election: { profile: this.profile },
      discovery: { enabled: false },
      lifecycle: { watch: false },
      http: { listen: `${h.node.addr}:${STATUS_PORT}` },
      // The instance's private IP in moto is not the namespace's address.
      peers: { address: h.node.addr },
      sourceDestCheck: "ignore",
      // A short reconcile interval, so a holder that was not fenced would visibly write.
      reconcileInterval: "2s",
      // keepalived's track_script timings: every 1 s, fall 3, rise 1.
      checks: { healthy: { type: "command", command: ["test", "-e", h.healthFile], every: "1s", timeout: "500ms", rise: 1, fall: 3 } },
      routes: [{ name: "default", table: { tags: { Name: `private-${this.lane.name}` } }, destination: DESTINATION, checks: ["healthy"], ...(this.allocationId ? { eip: this.allocationId } : {}) }],
    };
    const path = h.file(`${this.name}.yaml`);
    writeFileSync(path, stringify(config));
    const proc = new ManagedProcess("ip", [...nsWrap(h.ns).slice(1), process.execPath, "--import", "tsx", join(REPO, "agent", "cli.ts"), "run", "--config", path], {
      name: `${this.name} ${h.name}`,
      cwd: REPO,
      env: awsEnv(h),
      keepLines: 300,
    });
    // A directory to append each agent's log lines to, for debugging a lab run.
    const dump = process.env.ROUTELEADER_LAB_LOGS;
    if (dump) proc.onLine((line) => appendFileSync(`${dump}/${this.name}-${h.name}.log`, `${line}\n`));
    proc.onLine((line) => {
      if (!line.startsWith("{")) return;
      let e: { time?: string; event?: string; step?: string; msg?: string; route?: string; reason?: string };
      try {
        e = JSON.parse(line) as typeof e;
      } catch {
        return;
      }
      if (e.event === "acquired" || e.event === "released" || e.event === "lost") {
        this.events.push({ host: h.name, t: Date.parse(e.time ?? ""), kind: e.event === "acquired" ? "acquire" : "release", detail: e.reason ?? e.event });
      }
    });
    return proc;
  }

  /**
   * Ready as the agent itself says on /status: no held route unconfirmed, and a session to
   * take every other route with. Log lines are not enough: a node whose session
   * Consul invalidated during a partition is refused a new one for seconds after the heal
   * (serfHealth still critical), and a trial started then finds no standby able to take over.
   */
  async ready(h: Host): Promise<boolean> {
    if (!this.running(h) || h.poweredOff) return false;
    const answer = await this.status(h);
    return !!answer && answer.routes.length > 0 && answer.routes.every((r) => !r.unconfirmed && !r.noSession);
  }

  private status(h: Host): Promise<AgentStatus | undefined> {
    return fetch(`http://${h.node.addr}:${STATUS_PORT}/status`, { signal: AbortSignal.timeout(1000) })
      .then((r) => (r.ok ? (r.json() as Promise<AgentStatus>) : undefined))
      .catch(() => undefined);
  }

  claims(): Claim[] {
    return [...this.events];
  }

  /** The agent's last log lines on a host (JSON lines). */
  logOf(h: Host): string {
    return this.procs.get(h.name)?.output(300) ?? "";
  }

  get writeWindowMs(): number {
    return PROFILE_DEFAULTS[this.profile].lockDelayMs;
  }

  private async keyHolder(): Promise<LaneObservation["holder"]> {
    const server = this.lane.cluster.liveServer();
    const kv = await consulHttp("GET", `${server.httpAddr}/v1/kv/routeleader/${this.lane.name}/routes/default?consistent`, undefined, 2000).catch((err: Error) => {
      if (/HTTP 404/.test(err.message)) return { json: [] };
      throw err;
    });
    const entry = (kv.json as { Session?: string; Value?: string; LockIndex: number }[] | undefined)?.[0];
    if (!entry?.Session || !entry.Value) return undefined;
    const instanceId = (JSON.parse(Buffer.from(entry.Value, "base64").toString()) as { instanceId?: string }).instanceId;
    return instanceId ? { instanceId, session: entry.Session, lockIndex: entry.LockIndex } : undefined;
  }

  async consulHolder(): Promise<string | undefined> {
    return this.world.hostByInstance((await this.keyHolder())?.instanceId)?.name;
  }

  async observe(): Promise<LaneObservation> {
    const [holder, reports] = await Promise.all([
      this.keyHolder(),
      Promise.all(
        this.lane.hosts.map(async (h) => {
          const answer = this.running(h) && !h.poweredOff ? await this.status(h) : undefined;
          // "releasing" is a key the agent still holds by its own account (given up once Consul confirms).
          // A held route marked unconfirmed (cut off from Consul) is neither claimed nor denied.
          return {
            instanceId: h.instanceId,
            holds: answer?.routes.filter((r) => (r.phase === "holding" || r.phase === "releasing") && !r.unconfirmed).map((r) => r.route),
            releasing: answer?.routes.some((r) => r.phase === "releasing") ?? false,
            unconfirmed: answer?.routes.filter((r) => r.unconfirmed).map((r) => r.route) ?? [],
          };
        }),
      ),
    ]);
    return { ...(holder ? { holder } : {}), reports };
  }
}

/** Where keepalived speaks VRRP and what its track_script runs; the fault lab's defaults suit its hosts. */
export interface KeepalivedOptions {
  /** The interface VRRP runs on, whose address is the host's `node.addr` (default eth0). */
  iface?: string;
  /** The track_script command (default: the host's health file exists). */
  check?: (h: Host) => string;
}

/**
 * What both keepalived contenders share: the claim file their notify writer appends to (named
 * after the contender), the process in the host's namespace, readiness and claims.
 */
abstract class KeepalivedSystem extends ProcessSystem {
  protected readonly iface: string;
  protected readonly check: (h: Host) => string;

  constructor(world: SystemWorld, lane: Lane, options: KeepalivedOptions = {}) {
    super(world, lane);
    this.iface = options.iface ?? "eth0";
    this.check = options.check ?? ((h) => `/usr/bin/test -e ${h.healthFile}`);
  }

  protected claimFile(h: Host): string {
    return h.file(`${this.name}-claims.log`);
  }

  /** Writes `conf` and starts keepalived on it, in the foreground, inside the host's namespace. */
  protected keepalived(h: Host, conf: string): ManagedProcess {
    const path = h.file(`${this.name}.conf`);
    writeFileSync(path, conf);
    const pid = (n: string) => h.file(`${this.name}-${n}.pid`);
    // A killed keepalived leaves its pid files, and its VRRP child stays a zombie until something
    // reaps it: the next keepalived finds that pid alive, says "daemon is already running" and
    // exits. A host starting keepalived afresh has no older one to protect.
    for (const n of ["main", "vrrp", "checkers"]) rmSync(pid(n), { force: true });
    return new ManagedProcess("ip", [...nsWrap(h.ns).slice(1), "/usr/sbin/keepalived", "-n", "-l", "-D", "-P", "-f", path, "-p", pid("main"), "-r", pid("vrrp"), "-c", pid("checkers")], {
      name: `${this.name} ${h.name}`,
      cwd: BASELINE,
      env: awsEnv(h),
      // keepalived forks a VRRP child: a SIGKILL must reach every keepalived process, as a crash
      // of the whole daemon would, not the parent alone.
      group: true,
    });
  }

  async ready(h: Host): Promise<boolean> {
    const since = this.startedAt.get(h.name) ?? Infinity;
    return this.running(h) && readClaimFile(h.name, this.claimFile(h)).some((c) => c.t >= since);
  }

  claims(): Claim[] {
    return this.lane.hosts.flatMap((h) => readClaimFile(h.name, this.claimFile(h)));
  }
}

/** keepalived: VRRP unicast between the host namespaces, advert 1 s, track_script interval 1 fall 3. */
export class Keepalived extends KeepalivedSystem {
  readonly name = "keepalived";

  protected spawn(h: Host): ManagedProcess {
    const peers = this.lane.hosts.filter((x) => x !== h).map((x) => `    ${x.node.addr}`);
    const notify = ["/bin/sh", join(BASELINE, "keepalived_notify.sh"), python(), this.claimFile(h), this.world.endpointFor(h), this.lane.tableId, DESTINATION, h.instanceId].join(" ");
    const conf = `global_defs {
  router_id ${h.name}
  script_user root
}
vrrp_script chk_health {
  script "${this.check(h)}"
  interval 1
  fall 3
  rise 1
}
vrrp_instance nat {
  state BACKUP
  nopreempt
  interface ${this.iface}
  virtual_router_id 51
  priority ${100 + this.lane.hosts.indexOf(h)}
  advert_int 1
  unicast_src_ip ${h.node.addr}
  unicast_peer {
${peers.join("\n")}
  }
  track_script {
    chk_health
  }
  notify "${notify}"
}
`;
    return this.keepalived(h, conf);
  }
}

/**
 * keepalived given a budget comparable to routeleader `fast` (issue #16): VRRPv3 with a 0.5 s
 * advert, priorities 50 apart (no two backups racing), and a writer started once through
 * notify_fifo with its EC2 client warm (keepalived_fifo_writer.py), so a takeover is one
 * ReplaceRoute. Same track_script as the stock contender (every 1 s, fall 3, rise 1).
 */
export class KeepalivedTuned extends KeepalivedSystem {
  readonly name = "keepalived-tuned";

  protected spawn(h: Host): ManagedProcess {
    this.reapFifoWriter(h);
    const peers = this.lane.hosts.filter((x) => x !== h).map((x) => `    ${x.node.addr}`);
    const writer = [python(), join(BASELINE, "keepalived_fifo_writer.py"), this.claimFile(h), this.world.endpointFor(h), this.lane.tableId, DESTINATION, h.instanceId].join(" ");
    const conf = `global_defs {
  router_id ${h.name}
  script_user root
  vrrp_version 3
  notify_fifo ${h.file("keepalived-tuned.fifo")}
  notify_fifo_script "${writer}"
}
vrrp_script chk_health {
  script "${this.check(h)}"
  interval 1
  fall 3
  rise 1
}
vrrp_instance nat {
  state BACKUP
  nopreempt
  interface ${this.iface}
  virtual_router_id 52
  priority ${100 + 50 * this.lane.hosts.indexOf(h)}
  advert_int 0.5
  # VRRPv3 refuses an instance without one; a TEST-NET-3 address nothing else uses.
  virtual_ipaddress {
    203.0.113.52/32 dev ${this.iface}
  }
  unicast_src_ip ${h.node.addr}
  unicast_peer {
${peers.join("\n")}
  }
  track_script {
    chk_health
  }
}
`;
    return this.keepalived(h, conf);
  }

  /**
   * keepalived starts its notify_fifo_script in a process group of its own, so a writer outlives
   * a keepalived that was killed (or did not stop it): still reading the FIFO, it would take the
   * next keepalived's events, and the new writer would never log the BACKUP that makes the host
   * ready. Before a start, any writer left on this host's FIFO is killed and the FIFO removed.
   */
  private reapFifoWriter(h: Host): void {
    const fifo = h.file("keepalived-tuned.fifo");
    try {
      execFileSync("pkill", ["-KILL", "-f", `keepalived_fifo_writer.py .* ${fifo}$`]);
    } catch {
      // pkill exits 1 when nothing matched
    }
    rmSync(fifo, { force: true });
  }
}

/** `consul lock` (the real binary) around lock_child.py, with Consul's default 15 s lock-delay. */
export class ConsulLock extends ProcessSystem {
  readonly name: string = "consul-lock";
  protected override readonly supervised = true;
  static readonly KEY = "rl-baseline/default/.lock";

  protected claimFile(h: Host): string {
    return h.file(`${this.name}-claims.log`);
  }

  protected childArgs(h: Host): string[] {
    return [python(), join(BASELINE, "lock_child.py"), this.claimFile(h), this.world.endpointFor(h), this.lane.tableId, DESTINATION, h.instanceId, h.healthFile];
  }

  protected spawn(h: Host): ManagedProcess {
    return new ManagedProcess("ip", [...nsWrap(h.ns).slice(1), binaryPath("consul"), "lock", `-http-addr=${h.consul?.httpAddr}`, "-name=nat-route", "rl-baseline/default", ...this.childArgs(h)], {
      name: `consul lock ${h.name}`,
      cwd: BASELINE,
      env: awsEnv(h),
      // The lock process and its route-writing child die together on a SIGKILL, as a crashed unit would.
      group: true,
    });
  }

  async ready(h: Host): Promise<boolean> {
    return this.running(h) && (await hasSession(h));
  }

  claims(): Claim[] {
    return this.lane.hosts.flatMap((h) => readClaimFile(h.name, this.claimFile(h)));
  }

  async consulHolder(): Promise<string | undefined> {
    return lockHolder(this.lane, ConsulLock.KEY);
  }
}

/** The `consul lock` loop with a session LockDelay of 1 s (tuned_lock.py). */
export class TunedConsulLock extends ConsulLock {
  override readonly name: string = "consul-lock-tuned";
  static readonly TUNED_KEY = "rl-baseline/tuned/.lock";

  protected override spawn(h: Host): ManagedProcess {
    return new ManagedProcess("ip", [...nsWrap(h.ns).slice(1), python(), join(BASELINE, "tuned_lock.py"), h.consul?.httpAddr ?? "", TunedConsulLock.TUNED_KEY, "1s", ...this.childArgs(h)], {
      name: `tuned lock ${h.name}`,
      cwd: BASELINE,
      env: awsEnv(h),
      group: true,
    });
  }

  override async consulHolder(): Promise<string | undefined> {
    return lockHolder(this.lane, TunedConsulLock.TUNED_KEY);
  }
}

export const SYSTEM_NAMES = ["routeleader-default", "routeleader-fast", "routeleader-eip", "keepalived", "keepalived-tuned", "consul-lock", "consul-lock-tuned"] as const;
export type SystemName = (typeof SYSTEM_NAMES)[number];

export const GOSSIP_OF: Record<SystemName, "default" | "fast"> = {
  "routeleader-default": "default",
  "routeleader-fast": "fast",
  "routeleader-eip": "default",
  keepalived: "default",
  "keepalived-tuned": "default",
  "consul-lock": "default",
  "consul-lock-tuned": "fast",
};

/** The system for a lane; the lane is named after the system. */
export function makeSystem(world: World, lane: Lane): FailoverSystem {
  const name = lane.name as SystemName;
  switch (name) {
    case "routeleader-default":
      return new Routeleader(world, lane, "default");
    case "routeleader-fast":
      return new Routeleader(world, lane, "fast");
    case "routeleader-eip":
      return new Routeleader(world, lane, "default", true);
    case "keepalived":
      return new Keepalived(world, lane);
    case "keepalived-tuned":
      return new KeepalivedTuned(world, lane);
    case "consul-lock":
      return new ConsulLock(world, lane);
    case "consul-lock-tuned":
      return new TunedConsulLock(world, lane);
  }
}

/**
 * Who holds the route by the claims: the latest acquire whose host has not released since. Claims
 * in the same millisecond keep their order in the host's log (a writer that drains queued state
 * changes logs BACKUP then MASTER within one millisecond).
 */
export function holderAt(claims: Claim[], t: number): string | undefined {
  let holder: { c: Claim; i: number } | undefined;
  claims.forEach((c, i) => {
    if (c.t > t) return;
    if (c.kind === "acquire" && (!holder || c.t >= holder.c.t)) holder = { c, i };
  });
  if (!holder) return undefined;
  const { c: acquired, i: at } = holder;
  const released = claims.some((c, i) => c.host === acquired.host && c.kind === "release" && (c.t > acquired.t || (c.t === acquired.t && i > at)) && c.t <= t);
  return released ? undefined : acquired.host;
}
