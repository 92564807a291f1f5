import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binaryPath } from "./binaries.js";
import { chooseConsulBackend } from "./container-runtime.js";
import { freePorts } from "./ports.js";
import { ManagedProcess, waitUntil } from "./process.js";

export type ConsulMode = "dev" | "server" | "client";

export interface ConsulAgentOptions {
  mode: ConsulMode;
  node: string;
  /** serf LAN addresses ("127.0.0.1:port") to retry-join. */
  join?: string[];
  bootstrapExpect?: number;
  /** Extra HCL appended to the agent's config file. */
  extraHcl?: string;
  /** Address to bind and serve on; 127.0.0.1 unless a namespace address is given. */
  bindAddress?: string;
  datacenter?: string;
  /** Run the binary under this command prefix (e.g. ["ip", "netns", "exec", "h1"]). */
  wrap?: string[];
}

/** A running Consul agent. `stop()` leaves gracefully; `kill()` crashes it. */
export class StartedConsul {
  constructor(
    readonly node: string,
    readonly mode: ConsulMode,
    readonly httpAddr: string,
    readonly serfLanAddr: string,
    public process: ManagedProcess,
    private readonly dataDir: string,
    private readonly respawn: () => ManagedProcess,
  ) {}

  get pid(): number | undefined {
    return this.process.pid;
  }

  /** GET a Consul HTTP path and parse its JSON. */
  async get<T>(path: string): Promise<T> {
    return (await consulHttp("GET", `${this.httpAddr}${path}`)).json as T;
  }

  async put<T>(path: string, body?: unknown): Promise<T> {
    return (await consulHttp("PUT", `${this.httpAddr}${path}`, body)).json as T;
  }

  async stop(): Promise<void> {
    await this.process.stop(10_000);
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Stops the process but keeps its data, for `restart()` (a server outage, not a removal). */
  async halt(): Promise<void> {
    await this.process.stop(10_000);
  }

  /**
   * Starts the agent again with the same node name, ports and data directory. A process that
   * exits while starting is started again (at most RESTART_ATTEMPTS times, its output on
   * stderr): its ports were picked from the ephemeral range when the lab began, so another
   * socket of the host may hold one of them for a moment. One that never answers fails with
   * its last output lines.
   */
  async restart(): Promise<void> {
    if (!this.process.hasExited) throw new Error(`consul ${this.node} is still running`);
    for (let attempt = 1; ; attempt++) {
      this.process = this.respawn();
      const proc = this.process;
      const answered = await waitUntil(
        `consul ${this.node} HTTP API after restart`,
        async () => {
          if (proc.hasExited) return "exited";
          return (await consulHttp("GET", `${this.httpAddr}/v1/agent/self`, undefined, 1000)).status === 200 ? "up" : undefined;
        },
        { timeoutMs: 30_000 },
      ).catch((err: Error) => {
        throw new Error(`${err.message}; consul's last lines:\n${proc.output(20)}`);
      });
      if (answered === "up") return;
      if (attempt >= RESTART_ATTEMPTS) throw new Error(`consul ${this.node} exited ${attempt} times while restarting; its last lines:\n${proc.output(20)}`);
      process.stderr.write(`consul ${this.node} exited while restarting (attempt ${attempt}); starting it again. Its last lines:\n${proc.output(10)}\n`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async kill(): Promise<void> {
    await this.process.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

interface HttpResult {
  status: number;
  json: unknown;
  text: string;
}

/** A raw HTTP call used by tests to read Consul's truth without the product's client. */
export function consulHttp(method: string, url: string, body?: unknown, timeoutMs = 5000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown = undefined;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        if ((res.statusCode ?? 0) >= 400) reject(new Error(`${method} ${url}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        else resolve({ status: res.statusCode ?? 0, json, text });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: timeout after ${timeoutMs} ms`)));
    req.on("error", reject);
    if (body !== undefined) req.write(typeof body === "string" ? body : JSON.stringify(body));
    req.end();
  });
}

/** How many times restart() starts a Consul agent that exits while starting. */
const RESTART_ATTEMPTS = 3;

/** Starts one Consul agent on loopback with ports chosen at run time. */
export async function startConsul(options: ConsulAgentOptions): Promise<StartedConsul> {
  const bin = binaryPath("consul");
  const host = options.bindAddress ?? "127.0.0.1";
  const [http, serfLan, serfWan, server] = await freePorts(4);
  const dataDir = mkdtempSync(join(tmpdir(), `rl-consul-${options.node}-`));
  const hcl = [
    `node_name = "${options.node}"`,
    `datacenter = "${options.datacenter ?? "dc1"}"`,
    `data_dir = "${dataDir}"`,
    `bind_addr = "${host}"`,
    `client_addr = "${host}"`,
    `advertise_addr = "${host}"`,
    `disable_update_check = true`,
    `log_level = "info"`,
    `ui_config { enabled = true }`,
    `ports { http = ${http}, serf_lan = ${serfLan}, serf_wan = ${serfWan}, server = ${server}, dns = -1, grpc = -1, grpc_tls = -1 }`,
    options.mode === "server" ? `server = true\nbootstrap_expect = ${options.bootstrapExpect ?? 3}` : "",
    options.mode === "client" ? `server = false\nleave_on_terminate = true` : "",
    options.join?.length ? `retry_join = [${options.join.map((j) => `"${j}"`).join(", ")}]\nretry_interval = "1s"` : "",
    // Faster Raft elections for tests; the product's defaults are untouched.
    options.mode === "server" ? "performance { raft_multiplier = 1 }" : "",
    options.extraHcl ?? "",
  ]
    .filter(Boolean)
    .join("\n");
  const configFile = join(dataDir, "agent.hcl");
  writeFileSync(configFile, hcl);
  const args = ["agent", ...(options.mode === "dev" ? ["-dev"] : []), `-config-file=${configFile}`];
  const [command, ...prefix] = options.wrap?.length ? [...options.wrap, bin] : [bin];
  const spawnAgent = () =>
    new ManagedProcess(command as string, [...prefix, ...args], {
      name: `consul ${options.node}`,
      env: { ...process.env, CHECKPOINT_DISABLE: "1" },
    });
  const proc = spawnAgent();
  const httpAddr = `http://${host}:${http}`;
  const started = new StartedConsul(options.node, options.mode, httpAddr, `${host}:${serfLan}`, proc, dataDir, spawnAgent);
  try {
    await waitUntil(
      `consul ${options.node} HTTP API at ${httpAddr}`,
      async () => {
        if (proc.hasExited) throw new Error(`exited early with ${JSON.stringify(proc.exit)}:\n${proc.output(30)}`);
        return (await consulHttp("GET", `${httpAddr}/v1/agent/self`, undefined, 1000)).status === 200 ? true : undefined;
      },
      { timeoutMs: 30_000 },
    );
  } catch (err) {
    await started.kill();
    throw new Error(`${(err as Error).message}\nlast output:\n${proc.output(30)}`);
  }
  return started;
}

/** Waits until the agent sees a Raft leader and its own node is in the catalog. */
export async function waitForConsulReady(agent: StartedConsul, timeoutMs = 60_000): Promise<void> {
  await waitUntil(
    `consul ${agent.node}: leader elected and node registered`,
    async () => {
      const leader = await agent.get<string>("/v1/status/leader");
      if (!leader) return undefined;
      const node = await agent.get<unknown>(`/v1/catalog/node/${agent.node}`);
      return node ? true : undefined;
    },
    { timeoutMs, intervalMs: 200 },
  );
}

/** A single dev agent (server + client in one, in-memory), ready for use. */
export async function startConsulDev(node = "dev"): Promise<StartedConsul> {
  const agent = (await chooseConsulBackend()) === "container" ? await startConsulDevContainer(node) : await startConsul({ mode: "dev", node });
  await waitForConsulReady(agent);
  return agent;
}

/**
 * A dev agent in a container, for laptops with a Docker engine (ROUTELEADER_CONSUL_CONTAINERS=1).
 * `docker run` stays in the foreground, so the container lives and dies with a process we own
 * (--rm, signals proxied), and publishes the HTTP port on loopback only.
 */
async function startConsulDevContainer(node: string): Promise<StartedConsul> {
  const [http] = await freePorts(1);
  const dataDir = mkdtempSync(join(tmpdir(), `rl-consul-${node}-`));
  // The same Consul as the default binary (v1.16.1, the last MPL-2.0 release).
  const image = process.env.ROUTELEADER_CONSUL_IMAGE ?? "hashicorp/consul:1.16.1";
  const args = ["run", "--rm", "--name", `rl-consul-${node}-${http}`, "-p", `127.0.0.1:${http}:8500`, image, "agent", "-dev", "-client", "0.0.0.0", `-node=${node}`];
  const spawnAgent = () => new ManagedProcess("docker", args, { name: `consul ${node} (container)` });
  const started = new StartedConsul(node, "dev", `http://127.0.0.1:${http}`, "", spawnAgent(), dataDir, spawnAgent);
  await waitUntil(`consul ${node} container at 127.0.0.1:${http}`, async () => {
    if (started.process.hasExited) throw new Error(`docker run exited:\n${started.process.output(20)}`);
    return (await consulHttp("GET", `${started.httpAddr}/v1/agent/self`, undefined, 1000)).status === 200 ? true : undefined;
  }, { timeoutMs: 120_000 });
  return started;
}

export interface ConsulCluster {
  servers: StartedConsul[];
  clients: StartedConsul[];
  /** Starts one more client agent joined to the servers. */
  addClient(node: string, extraHcl?: string): Promise<StartedConsul>;
  stop(): Promise<void>;
}

/**
 * Three servers (bootstrap_expect = 3) and one client agent per simulated instance, all on
 * loopback. Sessions belong to a node, so each contender gets its own client agent.
 */
export async function startConsulCluster(options: { clients: string[]; prefix?: string; clientHcl?: string; serverHcl?: string }): Promise<ConsulCluster> {
  const prefix = options.prefix ?? "s";
  const servers: StartedConsul[] = [];
  const clients: StartedConsul[] = [];
  const stopAll = async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    servers.push(await startConsul({ mode: "server", node: `${prefix}1`, bootstrapExpect: 3, extraHcl: options.serverHcl }));
    for (const n of [2, 3]) {
      servers.push(await startConsul({ mode: "server", node: `${prefix}${n}`, bootstrapExpect: 3, join: [servers[0]!.serfLanAddr], extraHcl: options.serverHcl }));
    }
    await Promise.all(servers.map((s) => waitForConsulReady(s)));
    const serverAddrs = servers.map((s) => s.serfLanAddr);
    const addClient = async (node: string, extraHcl?: string) => {
      const c = await startConsul({ mode: "client", node, join: serverAddrs, extraHcl: extraHcl ?? options.clientHcl });
      clients.push(c);
      await waitForConsulReady(c);
      return c;
    };
    await Promise.all(options.clients.map((n) => addClient(n)));
    return { servers, clients, addClient, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
