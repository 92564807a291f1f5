import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocateAddressCommand, AssociateAddressCommand, EC2Client } from "@aws-sdk/client-ec2";
import { startSimCluster, type SimCluster, type SimNode } from "../cluster.js";
import { holderAt, Keepalived, KeepalivedTuned, type FailoverSystem, type SystemWorld } from "../faults/systems.js";
import { ConsulGroup, Host, type Lane } from "../faults/world.js";
import { EMULATOR_AWS } from "../moto.js";
import { ManagedProcess, waitUntil } from "../process.js";
import { TcpStreams, UdpProbe } from "./probe.js";
import { VpcRouter } from "./router.js";
import { Dataplane, INTERNET_ADDR, ROUTER_ADDR, type NatNs } from "./vpc.js";

/**
 * A failover system on real moto (behind the fault proxy) driving the namespace data plane: a
 * UDP probe at 100 packets/s and optionally long-lived TCP echo streams from the private client
 * to the internet host, while a fault hits the route's holder. The system is routeleader (agents
 * on real Consul) or one of the fault lab's keepalived contenders (test/support/faults/systems.ts),
 * run inside the NAT namespaces: VRRP unicast over the NATs' direct link, the track_script
 * testing the NAT's forwarding, the notify writer calling EC2 at the router's address (a relay
 * to the fault proxy), so the simulated VPC router follows what it writes.
 */

export const FAULTS = ["health-check", "graceful-stop", "sigkill", "power-off", "partition"] as const;
export type FaultName = (typeof FAULTS)[number];

export const CONTENDERS = ["routeleader", "keepalived", "keepalived-tuned"] as const;
export type ContenderName = (typeof CONTENDERS)[number];

/** The faults that do not apply to keepalived, and why. */
export const KEEPALIVED_SKIPS: Partial<Record<FaultName, string>> = {
  partition:
    "the fault freezes the holder's Consul client; keepalived uses no Consul, so nothing fails over (its partition, VRRP cut between the NATs, makes both MASTER: a split brain, measured in failover.json, not an outage)",
};

export interface LabOptions {
  /** The failover system (default routeleader). */
  contender?: ContenderName;
  /** Same-AZ connection-preserving mode: secondary IP + its EIP follow the holder, conntrackd syncs the pair. */
  sameAz?: boolean;
  /** Run conntrackd in the NAT pair (same-AZ mode only; default true there). */
  conntrackd?: boolean;
  /** The holder's health check fails this many times before it lets go. */
  fall?: number;
}

export interface TrialResult {
  fault: FaultName;
  /** Longest gap in the probe's echo stream from the fault until the stream is steady again. */
  outageMs: number;
  /** Fault → the new holder's ReplaceRoute answered by EC2 (moto, through the fault proxy). */
  controlPlaneMs: number;
  /** Of the control plane: that ReplaceRoute from its arrival at the proxy to its answer. */
  writeMs: number;
  /** ReplaceRoute answered → the router applied the route. */
  routerLagMs: number;
  /** Of the router lag: answered → the start of the router's poll that saw it (negative: the poll began before the answer). */
  routerWaitMs: number;
  /** The router's polls (Describe calls sent → changes applied) from the fault until the probes settled: median and longest. */
  routerPollMs: { p50: number; max: number };
  connections?: { tried: number; survived: number; errors: string[] };
}

const REPO = join(import.meta.dirname, "..", "..", "..");
const ROUTE = "egress";
const TABLE = "private-a";
const SECONDARY_IP = "10.0.0.200";
const CLIENT = { cidr: "10.0.100.0/24", addr: "10.0.100.10" };
/** The EC2 endpoint as the NAT namespaces reach it: a relay in the router namespace. */
const RELAY_PORT = 5001;
const KEEPALIVED_CHECK = "/usr/bin/grep -qx 1 /proc/sys/net/ipv4/ip_forward";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

export class DataplaneLab {
  readonly conntrackd = new Map<string, ManagedProcess>();
  probe!: UdpProbe;
  /** The route's Elastic IP in same-AZ mode. */
  eipAllocation: string | undefined;
  router!: VpcRouter;
  /** EC2 through the fault proxy (which keeps the private IP an EIP association named). */
  ec2!: EC2Client;
  /** A keepalived contender, and its hosts (one per NAT namespace). */
  system: FailoverSystem | undefined;
  private readonly hosts = new Map<string, Host>();
  private relay: net.Server | undefined;

  private constructor(
    readonly sim: SimCluster,
    readonly dp: Dataplane,
    readonly dir: string,
    readonly options: LabOptions,
  ) {}

  static async start(options: LabOptions = {}): Promise<DataplaneLab> {
    const fall = options.fall ?? 2;
    const contender = options.contender ?? "routeleader";
    if (options.sameAz && contender !== "routeleader") throw new Error(`same-AZ mode is routeleader's; not for ${contender}`);
    const sim = await startSimCluster({
      cluster: "dataplane",
      nodes: [
        { name: "n1", az: "us-east-1a", http: true },
        { name: "n2", az: "us-east-1a", http: true },
      ],
      tables: [{ name: TABLE, az: "us-east-1a" }],
      routes: [{ name: ROUTE, table: { tags: { Name: TABLE } }, destination: "0.0.0.0/0", checks: ["data-path"], preferredAz: "none" }],
      checks: {},
      extra: { reconcileInterval: "2s" },
      faultProxy: true,
    });
    let dp: Dataplane | undefined;
    try {
      // moto gives instances no public IP: each gets an Elastic IP on its primary address.
      for (const n of sim.nodes) {
        const alloc = (await sim.ec2.send(new AllocateAddressCommand({ Domain: "vpc" }))).AllocationId as string;
        await sim.ec2.send(new AssociateAddressCommand({ AllocationId: alloc, NetworkInterfaceId: n.identity.eniId, PrivateIpAddress: n.identity.privateIp }));
      }
      dp = Dataplane.create({
        client: CLIENT,
        nats: sim.nodes.map((n) => ({ name: n.name, eniId: n.identity.eniId, privateIp: n.identity.privateIp, ...(options.sameAz ? { snatTo: SECONDARY_IP } : {}) })),
        // conntrackd's link in same-AZ mode; keepalived's VRRP link otherwise.
        syncLink: !!options.sameAz || contender !== "routeleader",
        strictTcp: !!options.sameAz,
      });
      const lab = new DataplaneLab(sim, dp, mkdtempSync(join(tmpdir(), "rl-dataplane-")), options);
      let eip: string | undefined;
      if (options.sameAz) eip = (await sim.ec2.send(new AllocateAddressCommand({ Domain: "vpc" }))).AllocationId as string;
      for (const n of sim.nodes) {
        const nat = dp.nat(n.name);
        n.patchConfig({
          checks: { "data-path": { type: "command", command: ["ip", "netns", "exec", nat.ns, "grep", "-qx", "1", "/proc/sys/net/ipv4/ip_forward"], every: "200ms", timeout: "1s", rise: 1, fall } },
          ...(options.sameAz
            ? {
                routes: [
                  { name: ROUTE, table: { tags: { Name: TABLE } }, destination: "0.0.0.0/0", checks: ["data-path"], preferredAz: "none", eip, sameAz: { subnet: n.identity.subnetId, privateIp: SECONDARY_IP } },
                ],
              }
            : {}),
        });
      }
      lab.eipAllocation = eip;
      if (options.sameAz && options.conntrackd !== false) for (const nat of dp.nats) lab.startConntrackd(nat);
      lab.ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: sim.proxy!.endpointFor("vpc-router"), maxAttempts: 1 });
      lab.router = new VpcRouter(dp, lab.ec2, sim.tableIds.get(TABLE) as string, "0.0.0.0/0", 100, sim.ec2);
      lab.router.start();
      await dp.startInternet();
      if (contender === "routeleader") {
        for (const n of sim.nodes) n.setHealthy(true);
        await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
      } else await lab.startKeepalived(contender);
      lab.probe = new UdpProbe(await dp.app(dp.client, ["udp-probe", INTERNET_ADDR, "100"], "udp probe"));
      return lab;
    } catch (err) {
      dp?.destroy();
      await sim.stop();
      throw err;
    }
  }

  natOf(node: SimNode): NatNs {
    return this.dp.nat(node.name);
  }

  /** The agent runs and its /status has the route with a Consul session, not cut off: it can take the route over. */
  private async agentReady(node: SimNode): Promise<boolean> {
    if (!node.process || node.process.hasExited) return false;
    const status = await node.status(1000).catch(() => undefined);
    return !!status && status.routes.length > 0 && status.routes.every((r) => !r.unconfirmed && !r.noSession);
  }

  /**
   * The fault lab's keepalived contender in the NAT namespaces. Its EC2 calls reach the fault
   * proxy (in this process, on loopback) through a relay at the router's address, so a NAT that
   * is powered off cannot write; the proxy logs them under the node's name.
   */
  private async startKeepalived(contender: "keepalived" | "keepalived-tuned"): Promise<void> {
    const proxy = new URL(this.sim.proxy!.endpoint);
    const socket = join(this.dir, "ec2.sock");
    this.relay = net.createServer((c) => {
      const up = net.connect(Number(proxy.port), proxy.hostname);
      c.on("error", () => up.destroy());
      up.on("error", () => c.destroy());
      c.pipe(up).pipe(c);
    });
    await new Promise<void>((resolve, reject) => {
      this.relay!.once("error", reject);
      this.relay!.listen(socket, () => resolve());
    });
    await this.dp.app(this.dp.router, ["relay", ROUTER_ADDR, String(RELAY_PORT), socket], "ec2 relay");
    // The relay answers a NAT through its host route: the writers' first call must find it.
    await this.router.applied();
    const cluster = new ConsulGroup("default", []);
    const hosts = this.sim.nodes.map((n) => {
      const nat = this.natOf(n);
      const dir = join(this.dir, n.name);
      mkdirSync(dir);
      return new Host({ role: n.name, ns: nat.ns, addr: nat.syncAddr as string }, dir, n.identity, n.instanceId, cluster);
    });
    const lane: Lane = { name: contender, hosts, tableId: this.sim.tableIds.get(TABLE) as string, cluster };
    for (const h of hosts) {
      h.lane = lane;
      this.hosts.set(h.name, h);
    }
    const world: SystemWorld = {
      ec2: this.ec2,
      endpointFor: (h) => `http://${ROUTER_ADDR}:${RELAY_PORT}/caller/${encodeURIComponent(h.name)}`,
      hostByInstance: (id) => hosts.find((h) => h.instanceId === id),
    };
    const options = { iface: "sync", check: () => KEEPALIVED_CHECK };
    this.system = contender === "keepalived" ? new Keepalived(world, lane, options) : new KeepalivedTuned(world, lane, options);
    for (const h of hosts) await this.system.start(h);
  }

  private hostOf(node: SimNode): Host {
    return this.hosts.get(node.name) as Host;
  }

  /** Who holds the route by the system's own account: Consul's key, or keepalived's last claims. */
  private async holder(): Promise<SimNode | undefined> {
    if (this.system) {
      const name = holderAt(this.system.claims(), Date.now());
      return name ? this.sim.node(name) : undefined;
    }
    return this.sim.nodeByInstance((await this.sim.holders()).get(ROUTE)?.instanceId);
  }

  /** Every node can take the route over: its agent has a session, or its keepalived has reported a state since it started. */
  private async allReady(): Promise<string | undefined> {
    for (const n of this.sim.nodes) {
      const ready = this.system ? await this.system.ready(this.hostOf(n)) : await this.agentReady(n);
      if (!ready) return `${n.name} not ready to take over yet`;
    }
    return undefined;
  }

  /** conntrackd in a NAT namespace, with the configuration the bootstrap renders (scripts/conntrackd-sync.sh). */
  startConntrackd(nat: NatNs): void {
    const peer = this.dp.nats.find((x) => x !== nat && x.syncAddr) as NatNs;
    const base = join(this.dir, nat.name);
    const conf = execFileSync("bash", [join(REPO, "scripts", "conntrackd-sync.sh"), "render", nat.syncAddr as string, peer.syncAddr as string, "sync"], {
      encoding: "utf8",
      env: { ...process.env, CT_LOG: `${base}-conntrackd.log`, CT_LOCK: `${base}-conntrackd.lock`, CT_SOCKET: `${base}-conntrackd.sock` },
    });
    writeFileSync(`${base}-conntrackd.conf`, conf);
    rmSync(`${base}-conntrackd.lock`, { force: true });
    const proc = new ManagedProcess("ip", ["netns", "exec", nat.ns, "conntrackd", "-C", `${base}-conntrackd.conf`], { name: `conntrackd ${nat.name}`, keepLines: 50 });
    this.conntrackd.set(nat.name, proc);
  }

  /** Stops conntrackd in every NAT: connections opened from now on are not synced, and a power-off no longer restarts it. */
  async stopConntrackd(): Promise<void> {
    await Promise.all([...this.conntrackd.values()].map((p) => p.stop(3000)));
    this.conntrackd.clear();
  }

  /** Consul's holder, the route table and the router all agree on one node, and probes flow. */
  async steady(timeoutMs = 60_000): Promise<SimNode> {
    return waitUntil(
      "a steady data plane",
      async () => {
        const holder = await this.holder();
        if (!holder) throw new Error(this.system ? `no keepalived MASTER; claims: ${JSON.stringify(this.system.claims().slice(-4))}` : `no holder in Consul; agents: ${this.sim.nodes.map((n) => `${n.name}: ${n.process?.output(3)}`).join(" | ")}`);
        const notReady = await this.allReady();
        if (notReady) throw new Error(notReady);
        const target = await this.sim.routeTarget(TABLE, "0.0.0.0/0");
        if (target !== holder.instanceId) throw new Error(`holder ${holder.name}, route table at ${target}`);
        const route = this.router.changes.filter((c) => c.kind === "route").at(-1);
        if (!route?.detail.includes(this.natOf(holder).routerVeth)) throw new Error(`router: ${route?.detail} (${this.router.lastError ?? "no poll error"})`);
        const now = Date.now();
        const got = this.probe.received(now - 1000, now);
        if (got < 30) throw new Error(`holder ${holder.name}, router applied; ${got} probe echoes in the last second`);
        return holder;
      },
      { timeoutMs, intervalMs: 200 },
    );
  }

  /** Breaks the holder as the fault class says; returns the fault time and how to heal. */
  async inject(fault: FaultName, holder: SimNode): Promise<{ t0: number; heal(): Promise<void> }> {
    const nat = this.natOf(holder);
    // The same for every contender: the NAT stops forwarding, its own check must notice.
    if (fault === "health-check") {
      this.dp.setForwarding(nat, false);
      return { t0: Date.now(), heal: async () => this.dp.setForwarding(nat, true) };
    }
    if (this.system) return this.injectKeepalived(this.system, fault, holder);
    const agent = holder.process as ManagedProcess;
    const restartAgent = async () => {
      if (!agent.hasExited) await agent.waitForExit(30_000);
      await this.sim.startAgent(holder.name);
    };
    const t0 = Date.now();
    switch (fault) {
      case "graceful-stop":
        agent.signal("SIGTERM");
        return { t0, heal: restartAgent };
      case "sigkill":
        agent.signal("SIGKILL");
        return { t0, heal: restartAgent };
      case "partition":
        // The holder's Consul agent frozen: the node is cut off from the cluster, its data path is up.
        holder.consul.process.signal("SIGSTOP");
        return { t0, heal: async () => holder.consul.process.signal("SIGCONT") };
      case "power-off": {
        agent.signal("SIGSTOP");
        holder.consul.process.signal("SIGSTOP");
        this.dp.powerOff(nat);
        agent.signal("SIGKILL");
        holder.consul.process.signal("SIGKILL");
        return {
          t0,
          heal: async () => {
            await holder.consul.process.waitForExit(10_000);
            this.dp.powerOn(nat);
            await this.router.resync();
            if (this.conntrackd.has(nat.name)) this.startConntrackd(nat);
            await holder.consul.restart();
            await restartAgent();
          },
        };
      }
    }
  }

  private async injectKeepalived(system: FailoverSystem, fault: FaultName, holder: SimNode): Promise<{ t0: number; heal(): Promise<void> }> {
    const skip = KEEPALIVED_SKIPS[fault];
    if (skip) throw new Error(`${fault} does not apply to ${system.name}: ${skip}`);
    const nat = this.natOf(holder);
    const h = this.hostOf(holder);
    const restart = async () => {
      await waitUntil(`${system.name} on ${h.name} exited`, async () => (system.running(h) ? undefined : true), { timeoutMs: 30_000, intervalMs: 50 });
      await system.start(h);
    };
    const t0 = Date.now();
    switch (fault) {
      case "graceful-stop":
        system.terminate(h);
        return { t0, heal: restart };
      case "sigkill":
        await system.kill(h);
        return { t0, heal: restart };
      default:
        // power-off: the links down, keepalived and its writer killed.
        h.poweredOff = true;
        this.dp.powerOff(nat);
        return {
          t0,
          heal: async () => {
            this.dp.powerOn(nat);
            await this.router.resync();
            h.poweredOff = false;
            await restart();
          },
        };
    }
  }

  /** One trial: steady state, fault, route converged and probes steady again, heal, steady again. */
  async trial(fault: FaultName, connections = 0): Promise<TrialResult> {
    const holder = await this.steady();
    const streams = connections ? new TcpStreams(await this.dp.app(this.dp.client, ["tcp-streams", INTERNET_ADDR, String(connections), "100"], "tcp streams")) : undefined;
    if (streams) await waitUntil("every TCP stream echoing", async () => (streams.latest?.conns.every((c) => c.echoed > 0) ? true : undefined), { timeoutMs: 15_000, intervalMs: 100 });
    const { t0, heal } = await this.inject(fault, holder);
    try {
      return await this.measure(fault, holder, t0, heal, streams);
    } catch (err) {
      // A failed trial still powers the holder back on (or restarts it), so the next one can run.
      await heal().catch(() => undefined);
      streams?.proc.signal("SIGTERM");
      throw err;
    }
  }

  private async measure(fault: FaultName, holder: SimNode, t0: number, heal: () => Promise<void>, streams: TcpStreams | undefined): Promise<TrialResult> {
    const moved = await waitUntil(
      "the route moved to another node and applied by the router",
      async () => {
        const target = this.sim.nodeByInstance(await this.sim.routeTarget(TABLE, "0.0.0.0/0"));
        if (!target || target === holder) return undefined;
        const write = this.sim.proxy!.calls({ caller: target.name, action: "ReplaceRoute" }).find((c) => c.time >= t0 && c.status === 200 && !c.injected);
        const applied = write && this.router.routeApplied(target.identity.eniId, write.time);
        return write && applied ? { target, write, applied, appliedAt: applied.t } : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    await waitUntil("probes flowing again", async () => (this.probe.received(moved.appliedAt, Date.now()) >= 100 ? true : undefined), { timeoutMs: 20_000, intervalMs: 50 });
    const settledAt = Date.now();
    let result: TrialResult["connections"];
    if (streams) {
      const sentAtSettle = streams.latest!.conns.map((c) => c.sent);
      // A stream that survived catches up: every byte sent before the probes settled comes back.
      await waitUntil(
        "every TCP stream caught up or failed",
        async () => (streams.latest!.conns.every((c, i) => c.error || c.echoed >= (sentAtSettle[i] ?? 0)) ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 100 },
      ).catch(() => undefined);
      const final = streams.latest!.conns;
      streams.proc.signal("SIGTERM");
      await streams.proc.waitForExit(5000).catch(() => undefined);
      const ok = final.filter((c, i) => !c.error && c.echoed >= (sentAtSettle[i] ?? 0));
      result = { tried: final.length, survived: ok.length, errors: final.flatMap((c) => (c.error ? [c.error] : [])) };
    }
    const outage = this.probe.longestGap(t0, settledAt);
    await heal();
    await this.steady();
    const polls = this.router.pollDurations(t0, settledAt);
    return {
      fault,
      outageMs: outage.ms,
      controlPlaneMs: moved.write.answeredAt - t0,
      writeMs: moved.write.answeredAt - moved.write.time,
      routerLagMs: moved.appliedAt - moved.write.answeredAt,
      routerWaitMs: moved.applied.polledAt - moved.write.answeredAt,
      routerPollMs: { p50: median(polls), max: polls.length ? Math.max(...polls) : 0 },
      ...(result ? { connections: result } : {}),
    };
  }

  async stop(): Promise<void> {
    if (this.system) await Promise.all([...this.hosts.values()].map((h) => this.system!.stop(h)));
    this.relay?.close();
    await this.router?.stop();
    this.ec2?.destroy();
    await Promise.all([...this.conntrackd.values()].map((p) => p.stop(3000)));
    await this.dp.stop();
    await this.sim.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  static readonly route = ROUTE;
  static readonly secondaryIp = SECONDARY_IP;
}
