import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AttachInternetGatewayCommand,
  AssociateRouteTableCommand,
  CreateInternetGatewayCommand,
  CreateRouteCommand,
  CreateRouteTableCommand,
  CreateSubnetCommand,
  CreateTagsCommand,
  CreateVpcCommand,
  DescribeRouteTablesCommand,
  EC2Client,
} from "@aws-sdk/client-ec2";
import { parse, stringify } from "yaml";
import { startAemm, type AemmOptions, type SimulatedIdentity, type StartedAemm } from "./aemm.js";
import { freePort } from "./ports.js";
import { consulHttp, startConsulCluster, type ConsulCluster, type StartedConsul } from "./consul.js";
import { identityOf, runInstance } from "./ec2-world.js";
import { startFaultProxy, type StartedFaultProxy } from "./fault-proxy.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "./moto.js";
import { ManagedProcess, waitUntil } from "./process.js";

/**
 * A local routeleader cluster on real components: moto (EC2), a 3-server Consul cluster
 * with one client agent per simulated instance, one metadata mock per instance, and the
 * agent itself as a separate process per instance. Used by the election, failover and
 * policy suites, the demo and the benchmarks.
 */

export interface SimNodeSpec {
  name: string;
  az: string;
  /** Serve the agent's HTTP endpoint (status, drain) on a free loopback port. */
  http?: boolean;
  /** Extra top-level config for this node only (merged over the cluster's `extra`). */
  extra?: Record<string, unknown>;
  /** Run the agent under this command prefix (e.g. `unshare --mount … --`). */
  wrap?: string[];
}

export interface ClusterSpec {
  cluster?: string;
  nodes: SimNodeSpec[];
  /** Route tables to create, one per name, in the AZ given (associated with a private subnet there). */
  tables: { name: string; az: string }[];
  /** The routes section of every agent's config (tables referenced by tag Name). */
  routes: Record<string, unknown>[];
  /** The checks section; `{dir}` in command arguments is replaced by the node's state dir. */
  checks?: Record<string, unknown>;
  /** Extra top-level config merged into every agent's config. */
  extra?: Record<string, unknown>;
  /** Put a fault-injection proxy in front of moto; each agent calls it as its node name. */
  faultProxy?: boolean;
  /** Extra HCL for Consul client agents (e.g. faster gossip). */
  clientHcl?: string;
}

/** The part of an agent's /status the tests read (see `status` in agent/agent.ts). */
export interface AgentStatus {
  instanceId: string;
  az: string;
  draining: boolean;
  routes: { route: string; phase: string; eligible?: boolean; holder: string | null; lockIndex?: number | null; blocked?: { reason: string; until?: string | number; forMs?: number } | null; unconfirmed?: string; [k: string]: unknown }[];
  checks: { name: string; passing: boolean; output?: string }[];
}

export interface AgentEvent {
  time: string;
  msg: string;
  route?: string;
  event?: string;
  [k: string]: unknown;
}

export class SimNode {
  process: ManagedProcess | undefined;
  readonly events: AgentEvent[] = [];
  private readonly eventWaiters: { test: (e: AgentEvent) => boolean; resolve: (e: AgentEvent) => void }[] = [];

  constructor(
    readonly spec: SimNodeSpec,
    readonly identity: SimulatedIdentity,
    public aemm: StartedAemm,
    readonly consul: StartedConsul,
    readonly dir: string,
    readonly configPath: string,
    /** The agent's HTTP endpoint, when `spec.http`. */
    readonly httpUrl: string | undefined,
  ) {}

  /** Restarts this node's metadata mock on the same port with other options (e.g. a termination). */
  async restartAemm(options: AemmOptions): Promise<void> {
    const port = Number(new URL(this.aemm.endpoint).port);
    await this.aemm.stop();
    this.aemm = await startAemm(this.identity, { ...options, port });
  }

  get name(): string {
    return this.spec.name;
  }

  get instanceId(): string {
    return this.identity.instanceId;
  }

  /** Path of a file in this node's state directory (command checks test for it). */
  file(name: string): string {
    return join(this.dir, name);
  }

  /**
   * Changes this node's config file for its next start: each top-level key of `patch`
   * replaces the one in the file, except objects, which are merged one level deep
   * (e.g. `{consul: {address: relay.endpoint}}`).
   */
  patchConfig(patch: Record<string, unknown>): void {
    const config = parse(readFileSync(this.configPath, "utf8")) as Record<string, unknown>;
    for (const [key, value] of Object.entries(patch)) {
      const before = config[key];
      const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);
      config[key] = isObject(before) && isObject(value) ? { ...before, ...value } : value;
    }
    writeFileSync(this.configPath, stringify(config));
  }

  /** GET the agent's /status (needs `http: true`). */
  async status<T = AgentStatus>(timeoutMs = 2000): Promise<T> {
    if (!this.httpUrl) throw new Error(`${this.name}: no HTTP endpoint (spec.http)`);
    const res = await fetch(`${this.httpUrl}/status`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new Error(`${this.name}: GET /status: HTTP ${res.status}`);
    return (await res.json()) as T;
  }

  /** POST an operator action (drain, undrain) to the agent's HTTP endpoint; returns its JSON answer. */
  async control<T = unknown>(action: "drain" | "undrain", timeoutMs = 30_000): Promise<T> {
    if (!this.httpUrl) throw new Error(`${this.name}: no HTTP endpoint (spec.http)`);
    const res = await fetch(`${this.httpUrl}/${action}`, { method: "POST", signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${this.name}: POST /${action}: HTTP ${res.status}: ${text}`);
    return JSON.parse(text) as T;
  }

  /** Makes the `{dir}/healthy` file that the simulated nodes' command check tests for exist or not. */
  setHealthy(ok: boolean): void {
    if (ok) writeFileSync(this.file("healthy"), "ok");
    else rmSync(this.file("healthy"), { force: true });
  }

  record(e: AgentEvent): void {
    this.events.push(e);
    for (const w of [...this.eventWaiters]) {
      if (w.test(e)) {
        this.eventWaiters.splice(this.eventWaiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  }

  /** Resolves with the first event (from `since` on) matching the test. */
  waitForEvent(test: (e: AgentEvent) => boolean, timeoutMs: number, since = 0): Promise<AgentEvent> {
    const seen = this.events.slice(since).find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.eventWaiters.splice(this.eventWaiters.indexOf(waiter), 1);
        const mock = this.aemm.process;
        const mockState = mock.hasExited ? `exited ${JSON.stringify(mock.exit)}:\n${mock.output(30)}` : "running";
        reject(new Error(`${this.name}: no matching agent event within ${timeoutMs} ms; last output:\n${this.process?.output(15) ?? "(not running)"}\nmetadata mock: ${mockState}`));
      }, timeoutMs);
      const waiter = {
        test,
        resolve: (e: AgentEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      this.eventWaiters.push(waiter);
    });
  }
}

const REPO = join(import.meta.dirname, "..", "..");

export class SimCluster {
  constructor(
    readonly spec: ClusterSpec,
    readonly cluster: string,
    readonly moto: StartedMoto,
    readonly ec2: EC2Client,
    readonly consul: ConsulCluster,
    readonly nodes: SimNode[],
    readonly tableIds: Map<string, string>,
    readonly vpcId: string,
    readonly proxy: StartedFaultProxy | undefined,
  ) {}

  node(name: string): SimNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  nodeByInstance(instanceId: string | undefined): SimNode | undefined {
    return this.nodes.find((n) => n.instanceId === instanceId);
  }

  /**
   * Starts the agent process of a node with its own Consul agent, metadata mock and config;
   * from the sources under tsx, or `options.cli` (e.g. `[node, "dist/agent/cli.js"]`, the build).
   */
  async startAgent(name: string, args: string[] = [], options: { cli?: string[] } = {}): Promise<SimNode> {
    const node = this.node(name);
    if (node.process && !node.process.hasExited) throw new Error(`${name} is already running`);
    const cli = options.cli ?? [process.execPath, "--import", "tsx", join(REPO, "agent", "cli.ts")];
    const argv = [...cli, "run", "--config", node.configPath, "--log-level", "debug", ...args];
    const [command, ...rest] = [...(node.spec.wrap ?? []), ...argv] as [string, ...string[]];
    const proc = new ManagedProcess(command, rest, {
      name: `agent ${name}`,
      cwd: REPO,
      env: {
        ...process.env,
        CI: "true",
        AWS_ACCESS_KEY_ID: "testing",
        AWS_SECRET_ACCESS_KEY: "testing",
        AWS_REGION: EMULATOR_AWS.region,
        AWS_EC2_METADATA_SERVICE_ENDPOINT: node.aemm.endpoint,
      },
      keepLines: 400,
    });
    node.process = proc;
    proc.onLine((line) => {
      if (!line.startsWith("{")) return;
      try {
        node.record(JSON.parse(line) as AgentEvent);
      } catch {
        // not a log line
      }
    });
    return node;
  }

  /** The holder (session + instance) of every route, read from Consul with ?consistent. */
  async holders(): Promise<Map<string, { session?: string; instanceId?: string; lockIndex: number }>> {
    const server = this.consul.servers.find((s) => !s.process.hasExited) as StartedConsul;
    const res = await consulHttp("GET", `${server.httpAddr}/v1/kv/routeleader/${this.cluster}/routes/?recurse&consistent`).catch((err: Error) => {
      if (/404/.test(err.message)) return { json: [] };
      throw err;
    });
    const out = new Map<string, { session?: string; instanceId?: string; lockIndex: number }>();
    for (const e of (res.json as { Key: string; Session?: string; Value?: string; LockIndex: number }[] | undefined) ?? []) {
      const route = e.Key.split("/").pop() as string;
      let instanceId: string | undefined;
      try {
        instanceId = e.Value ? (JSON.parse(Buffer.from(e.Value, "base64").toString()) as { instanceId?: string }).instanceId : undefined;
      } catch {
        instanceId = undefined;
      }
      out.set(route, { ...(e.Session ? { session: e.Session } : {}), ...(e.Session && instanceId ? { instanceId } : {}), lockIndex: e.LockIndex });
    }
    return out;
  }

  /** Waits until every route has a holder satisfying `test`; returns the holders. */
  async waitForHolders(routes: string[], test: (route: string, instanceId: string | undefined) => boolean, timeoutMs: number) {
    return waitUntil(
      `holders of ${routes.join(", ")}`,
      async () => {
        const h = await this.holders();
        return routes.every((r) => test(r, h.get(r)?.instanceId)) ? h : undefined;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  /** Where the route table actually points the destination. */
  async routeTarget(tableName: string, destination: string): Promise<string | undefined> {
    const id = this.tableIds.get(tableName);
    const res = await this.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [id as string] }));
    const route = res.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === destination || r.DestinationIpv6CidrBlock === destination);
    return route?.InstanceId ?? route?.NetworkInterfaceId ?? route?.NatGatewayId ?? route?.GatewayId;
  }

  async stopAgents(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.process?.stop(15_000)));
  }

  async stop(): Promise<void> {
    await this.stopAgents();
    await Promise.all(this.nodes.map((n) => n.aemm.stop()));
    await this.consul.stop();
    this.ec2.destroy();
    await this.proxy?.stop();
    await this.moto.stop();
    for (const n of this.nodes) rmSync(n.dir, { recursive: true, force: true });
  }
}

function substitute(value: unknown, dir: string): unknown {
  if (typeof value === "string") return value.replaceAll("{dir}", dir);
  if (Array.isArray(value)) return value.map((v) => substitute(v, dir));
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, dir)]));
  return value;
}

/** Builds the VPC in moto, the Consul cluster, a metadata mock and config per node. */
export async function startSimCluster(spec: ClusterSpec): Promise<SimCluster> {
  const cluster = spec.cluster ?? "sim";
  const moto = await startMoto();
  const ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  let consul: ConsulCluster | undefined;
  let proxy: StartedFaultProxy | undefined;
  const nodes: SimNode[] = [];
  try {
    const vpc = (await ec2.send(new CreateVpcCommand({ CidrBlock: "10.0.0.0/16" }))).Vpc!;
    const vpcId = vpc.VpcId as string;
    const igw = (await ec2.send(new CreateInternetGatewayCommand({}))).InternetGateway!;
    await ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: igw.InternetGatewayId, VpcId: vpcId }));
    const azs = [...new Set([...spec.nodes.map((n) => n.az), ...spec.tables.map((t) => t.az)])];
    const publicSubnet = new Map<string, string>();
    for (const [i, az] of azs.entries()) {
      publicSubnet.set(az, (await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: `10.0.${i}.0/24`, AvailabilityZone: az }))).Subnet!.SubnetId as string);
    }
    const tableIds = new Map<string, string>();
    for (const [i, t] of spec.tables.entries()) {
      const table = (await ec2.send(new CreateRouteTableCommand({ VpcId: vpcId }))).RouteTable!;
      const id = table.RouteTableId as string;
      tableIds.set(t.name, id);
      await ec2.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: "Name", Value: t.name }, { Key: "routeleader/managed", Value: cluster }] }));
      // A subnet has one route table (EC2 refuses a second association; moto moves it to the
      // newest table), so every table gets a private subnet of its own and keeps its AZ.
      const privateSubnet = (await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: `10.0.${100 + i}.0/24`, AvailabilityZone: t.az }))).Subnet!.SubnetId as string;
      await ec2.send(new AssociateRouteTableCommand({ RouteTableId: id, SubnetId: privateSubnet }));
      // Before any agent runs, the default route points at the internet gateway (a foreign target).
      await ec2.send(new CreateRouteCommand({ RouteTableId: id, DestinationCidrBlock: "0.0.0.0/0", GatewayId: igw.InternetGatewayId }));
    }
    consul = await startConsulCluster({ clients: spec.nodes.map((n) => n.name), ...(spec.clientHcl ? { clientHcl: spec.clientHcl } : {}) });
    if (spec.faultProxy) proxy = await startFaultProxy({ upstream: moto.endpoint });
    for (const n of spec.nodes) {
      const identity = identityOf(await runInstance(ec2, publicSubnet.get(n.az) as string));
      const aemm = await startAemm(identity);
      const dir = mkdtempSync(join(tmpdir(), `rl-node-${n.name}-`));
      const consulAgent = consul.clients.find((c) => c.node === n.name) as StartedConsul;
      const config = {
        cluster,
        region: EMULATOR_AWS.region,
        consul: { address: consulAgent.httpAddr },
        imds: { endpoint: aemm.endpoint },
        aws: { endpoint: proxy ? proxy.endpointFor(n.name) : moto.endpoint },
        checks: substitute(spec.checks ?? {}, dir),
        routes: spec.routes,
        sourceDestCheck: "ignore",
        // Consul's retry_join joins the loopback agents; EC2 discovery would try moto's fake 10.x addresses.
        discovery: { enabled: false },
        http: { listen: "" },
        // Every node shares the loopback here; the peer heartbeats are tested in namespaces (peers.test.ts).
        peers: { enabled: false },
        ...(spec.extra ?? {}),
      };
      const httpPort = n.http ? await freePort() : undefined;
      const nodeConfig = { ...config, ...(httpPort ? { http: { listen: `127.0.0.1:${httpPort}` } } : {}), ...(n.extra ?? {}) };
      const configPath = join(dir, "routeleader.yaml");
      writeFileSync(configPath, stringify(nodeConfig));
      nodes.push(new SimNode(n, identity, aemm, consulAgent, dir, configPath, httpPort ? `http://127.0.0.1:${httpPort}` : undefined));
    }
    return new SimCluster(spec, cluster, moto, ec2, consul, nodes, tableIds, vpcId, proxy);
  } catch (err) {
    await Promise.all(nodes.map((n) => n.aemm.stop()));
    await consul?.stop();
    await proxy?.stop();
    ec2.destroy();
    await moto.stop();
    throw err;
  }
}
