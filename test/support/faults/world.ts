import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AttachInternetGatewayCommand,
  CreateInternetGatewayCommand,
  CreateRouteCommand,
  DescribeRouteTablesCommand,
  EC2Client,
  ReplaceRouteCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { startAemm, type SimulatedIdentity, type StartedAemm } from "../aemm.js";
import { binaryPath } from "../binaries.js";
import { consulHttp, startConsul, waitForConsulReady, type StartedConsul } from "../consul.js";
import { createSubnet, createTable, createVpc, identityOf, runInstance } from "../ec2-world.js";
import { startFaultProxy, type StartedFaultProxy } from "../fault-proxy.js";
import { EMULATOR_AWS } from "../moto.js";
import type { NetnsNode, Topology } from "../netns.js";
import { nsPids, nsWrap } from "../netns.js";
import { ManagedProcess, waitUntil } from "../process.js";

/**
 * What runs in the hub namespace (this process): moto and the fault proxy bound to the hub's
 * bridge address, the VPC in moto, the Consul servers in their namespaces, and per host a
 * Consul client agent and a metadata mock inside the host's namespace.
 */

export const DESTINATION = "0.0.0.0/0";
const AZ = `${EMULATOR_AWS.region}a`;
const MOTO_PORT = 5000;
const PROXY_PORT = 5001;

/** Consul's gossip as the bootstrap writes it for the `fast` profile (scripts/bootstrap.sh). */
export const FAST_GOSSIP_HCL = `gossip_lan {\n  probe_interval = "500ms"\n  probe_timeout = "250ms"\n  suspicion_mult = 3\n}`;

/** One Consul cluster (3 servers in their namespaces) with its gossip settings. */
export class ConsulGroup {
  servers: StartedConsul[] = [];
  /** Servers cut off by a scenario: not used to read Consul's truth. */
  readonly isolated = new Set<string>();

  constructor(
    readonly gossip: "default" | "fast",
    readonly nodes: NetnsNode[],
  ) {}

  get hcl(): string {
    return this.gossip === "fast" ? FAST_GOSSIP_HCL : "";
  }

  /** A Consul server that is running and not cut off, for reads of Consul's truth. */
  liveServer(): StartedConsul {
    const s = this.servers.find((x) => !x.process.hasExited && !this.isolated.has(x.node));
    if (!s) throw new Error("no Consul server running");
    return s;
  }
}

/** One system under test: its own hosts, its own route table, the Consul cluster it uses. */
export interface Lane {
  name: string;
  hosts: Host[];
  tableId: string;
  cluster: ConsulGroup;
}

export class Host {
  aemm: StartedAemm | undefined;
  consul: StartedConsul | undefined;
  /** Powered off: its processes were frozen and killed, its link is down. */
  poweredOff = false;
  partitioned = false;

  lane!: Lane;

  constructor(
    readonly node: NetnsNode,
    readonly dir: string,
    public identity: SimulatedIdentity,
    /** A stable Consul node id, so a restarted agent is the same node. */
    readonly nodeId: string,
    readonly cluster: ConsulGroup,
  ) {}

  get name(): string {
    return this.node.role;
  }

  get ns(): string {
    return this.node.ns;
  }

  get instanceId(): string {
    return this.identity.instanceId;
  }

  file(name: string): string {
    return join(this.dir, name);
  }

  get healthFile(): string {
    return this.file("healthy");
  }

  setHealthy(ok: boolean): void {
    if (ok) writeFileSync(this.healthFile, "ok");
    else rmSync(this.healthFile, { force: true });
  }
}

async function startMotoAt(addr: string): Promise<ManagedProcess> {
  const proc = new ManagedProcess(binaryPath("moto"), ["-H", addr, "-p", String(MOTO_PORT)], { name: "moto" });
  const endpoint = `http://${addr}:${MOTO_PORT}`;
  await waitUntil(
    `moto at ${endpoint}`,
    async () => {
      if (proc.hasExited) throw new Error(`moto exited early:\n${proc.output(20)}`);
      return (await consulHttp("POST", `${endpoint}/moto-api/reset`, undefined, 1000)).status === 200 ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  return proc;
}

export interface LaneSpec {
  name: string;
  gossip: "default" | "fast";
}

export const HOSTS_PER_LANE = 3;

export class World {
  private constructor(
    readonly topology: Topology,
    readonly moto: ManagedProcess,
    readonly motoEndpoint: string,
    readonly proxy: StartedFaultProxy,
    readonly ec2: EC2Client,
    readonly vpcId: string,
    readonly subnetId: string,
    readonly igwTarget: string,
    readonly clusters: ConsulGroup[],
    readonly lanes: Lane[],
  ) {}

  /** Needs HOSTS_PER_LANE hosts per lane and 3 server namespaces per gossip setting used. */
  static async start(topology: Topology, laneSpecs: LaneSpec[]): Promise<World> {
    const hub = topology.hub.addr;
    const moto = await startMotoAt(hub);
    const motoEndpoint = `http://${hub}:${MOTO_PORT}`;
    const ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: motoEndpoint, maxAttempts: 1 });
    const proxy = await startFaultProxy({ upstream: motoEndpoint, blackholeStoppedTargets: false, host: hub, port: PROXY_PORT });
    const { vpcId } = await createVpc(ec2, "10.0.0.0/16");
    const publicSubnet = await createSubnet(ec2, vpcId, "10.0.0.0/24", AZ);
    const igw = (await ec2.send(new CreateInternetGatewayCommand({}))).InternetGateway!.InternetGatewayId as string;
    await ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: igw, VpcId: vpcId }));
    const gossips = [...new Set(laneSpecs.map((l) => l.gossip))];
    const clusters = gossips.map((g, i) => new ConsulGroup(g, topology.servers.slice(i * 3, i * 3 + 3)));
    if (clusters.some((c) => c.nodes.length < 3)) throw new Error(`need 3 Consul server namespaces per gossip setting (${gossips.join(", ")})`);
    if (topology.hosts.length < laneSpecs.length * HOSTS_PER_LANE) throw new Error(`need ${HOSTS_PER_LANE} hosts per lane`);
    const lanes: Lane[] = [];
    let n = 0;
    for (const spec of laneSpecs) {
      const privateSubnet = await createSubnet(ec2, vpcId, `10.0.${lanes.length + 1}.0/24`, AZ);
      const tableId = await createTable(ec2, vpcId, { tags: { Name: `private-${spec.name}`, "routeleader/managed": "faults" }, subnets: [privateSubnet] });
      await ec2.send(new CreateRouteCommand({ RouteTableId: tableId, DestinationCidrBlock: DESTINATION, GatewayId: igw }));
      const cluster = clusters.find((c) => c.gossip === spec.gossip) as ConsulGroup;
      const hosts: Host[] = [];
      for (const node of topology.hosts.slice(lanes.length * HOSTS_PER_LANE, (lanes.length + 1) * HOSTS_PER_LANE)) {
        const dir = mkdtempSync(join(tmpdir(), `${topology.prefix}-${node.role}-`));
        const identity = identityOf(await runInstance(ec2, publicSubnet));
        hosts.push(new Host(node, dir, identity, `00000000-0000-4000-8000-${String(++n).padStart(12, "0")}`, cluster));
      }
      const lane = { name: spec.name, hosts, tableId, cluster };
      for (const h of hosts) h.lane = lane;
      lanes.push(lane);
    }
    return new World(topology, moto, motoEndpoint, proxy, ec2, vpcId, publicSubnet, igw, clusters, lanes);
  }

  get hosts(): Host[] {
    return this.lanes.flatMap((l) => l.hosts);
  }

  lane(name: string): Lane {
    const l = this.lanes.find((x) => x.name === name);
    if (!l) throw new Error(`no lane ${name}`);
    return l;
  }

  hostByInstance(instanceId: string | undefined): Host | undefined {
    return this.hosts.find((h) => h.instanceId === instanceId);
  }

  /** The proxy endpoint a host's EC2 calls go to; the path names the caller in the proxy log. */
  endpointFor(host: Host): string {
    return this.proxy.endpointFor(host.name);
  }

  /** Starts every Consul cluster (servers, then the client agent of each of its hosts). */
  async startConsul(): Promise<void> {
    for (const c of this.clusters) {
      for (const [i, s] of c.nodes.entries()) {
        c.servers.push(
          await startConsul({
            mode: "server",
            node: s.role,
            bindAddress: s.addr,
            wrap: nsWrap(s.ns),
            bootstrapExpect: 3,
            ...(i > 0 ? { join: [c.servers[0]!.serfLanAddr] } : {}),
            extraHcl: c.hcl,
          }),
        );
      }
      await Promise.all(c.servers.map((s) => waitForConsulReady(s)));
    }
    await Promise.all(this.hosts.map((h) => this.startHostConsul(h)));
  }

  async startHostConsul(h: Host): Promise<void> {
    h.consul = await startConsul({
      mode: "client",
      node: h.name,
      bindAddress: h.node.addr,
      wrap: nsWrap(h.ns),
      join: h.cluster.servers.map((s) => s.serfLanAddr),
      extraHcl: `node_id = "${h.nodeId}"\n${h.cluster.hcl}`,
    });
    await waitForConsulReady(h.consul);
  }

  async startHostAemm(h: Host): Promise<void> {
    await h.aemm?.stop();
    h.aemm = await startAemm(h.identity, { host: h.node.addr, wrap: nsWrap(h.ns) });
  }

  async stopConsul(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.consul?.stop()));
    for (const c of this.clusters) {
      await Promise.all(c.servers.map((s) => s.stop()));
      c.servers = [];
    }
    for (const h of this.hosts) h.consul = undefined;
  }

  /** Where a lane's route table points the destination, read from moto directly. */
  async routeTarget(lane: Lane): Promise<string | undefined> {
    const res = await this.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [lane.tableId] }));
    const route = res.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === DESTINATION);
    return route?.InstanceId ?? route?.NetworkInterfaceId ?? route?.GatewayId;
  }

  /** Points a lane's route back at the internet gateway (a foreign target) before its system starts. */
  async resetRoute(lane: Lane): Promise<void> {
    await this.ec2.send(new ReplaceRouteCommand({ RouteTableId: lane.tableId, DestinationCidrBlock: DESTINATION, GatewayId: this.igwTarget }));
  }

  async terminateInstance(h: Host): Promise<void> {
    await this.ec2.send(new TerminateInstancesCommand({ InstanceIds: [h.instanceId] }));
  }

  /** Gives the host a new instance in moto (an ASG replacement). */
  async replaceInstance(h: Host): Promise<void> {
    h.identity = identityOf(await runInstance(this.ec2, this.subnetId));
  }

  /** Every pid in a host's namespace (what a power-off freezes and kills). */
  pidsOf(h: Host): number[] {
    return nsPids(h.ns);
  }

  async stop(): Promise<void> {
    for (const h of this.hosts) await h.aemm?.stop();
    await this.stopConsul();
    this.ec2.destroy();
    await this.proxy.stop();
    await this.moto.stop();
    for (const h of this.hosts) rmSync(h.dir, { recursive: true, force: true });
  }
}
