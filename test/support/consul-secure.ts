import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request as httpsRequest } from "node:https";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binaryPath } from "./binaries.js";
import { freePorts } from "./ports.js";
import { ManagedProcess, waitUntil } from "./process.js";

/**
 * Consul dev agents with security turned on: ACLs with `default_policy = "deny"`, and/or an
 * HTTPS-only API requiring client certificates. The usual fixture's readiness probe
 * (`/v1/agent/self` without a token) cannot pass against these, so readiness here is a
 * non-empty `/v1/status/leader`, which needs no token.
 */

export interface TlsMaterial {
  dir: string;
  caFile: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate (server.dc1.consul, localhost, 127.0.0.1) and a client certificate, made by the real binary. */
export function makeTlsMaterial(): TlsMaterial {
  const consul = binaryPath("consul");
  const dir = mkdtempSync(join(tmpdir(), "rl-tls-"));
  const run = (...args: string[]) => execFileSync(consul, args, { cwd: dir, stdio: "pipe" });
  run("tls", "ca", "create");
  run("tls", "cert", "create", "-server", "-dc", "dc1");
  run("tls", "cert", "create", "-client", "-dc", "dc1");
  return {
    dir,
    caFile: join(dir, "consul-agent-ca.pem"),
    serverCert: join(dir, "dc1-server-consul-0.pem"),
    serverKey: join(dir, "dc1-server-consul-0-key.pem"),
    clientCert: join(dir, "dc1-client-consul-0.pem"),
    clientKey: join(dir, "dc1-client-consul-0-key.pem"),
  };
}

export interface SecureConsulOptions {
  /** Enable ACLs, deny by default, with this management token. */
  managementToken?: string;
  /** Serve the HTTP API over HTTPS only, verifying client certificates. */
  tls?: TlsMaterial;
  /** With tls: HTTPS callers need no client certificate (as on the stack's servers); RPC still verifies both ends. */
  httpsWithoutClientCert?: boolean;
}

export interface ConsulWritable {
  kv: string[];
  services: string[];
  sessions: string[];
}

export class StartedSecureConsul {
  constructor(
    /** http://127.0.0.1:port or https://127.0.0.1:port */
    readonly address: string,
    readonly process: ManagedProcess,
    private readonly options: SecureConsulOptions,
    private readonly dataDir: string,
  ) {}

  /** A raw call with the management token (or `token`) and the client certificate: the test's view of the truth. */
  async call(method: string, path: string, body?: string, token?: string): Promise<{ status: number; json: unknown }> {
    return rawCall(this.address, method, path, token ? { ...this.options, managementToken: token } : this.options, body);
  }

  /** Deregisters every service, destroys every session, deletes KV under routeleader/. */
  async reset(): Promise<void> {
    const services = await this.call("GET", "/v1/agent/services");
    for (const id of Object.keys((services.json as Record<string, unknown>) ?? {})) await this.call("PUT", `/v1/agent/service/deregister/${id}`);
    const sessions = await this.call("GET", "/v1/session/list");
    for (const s of (sessions.json as { ID: string }[]) ?? []) await this.call("PUT", `/v1/session/destroy/${s.ID}`);
    await this.call("DELETE", "/v1/kv/routeleader/?recurse");
  }

  /** What an agent can write: KV under routeleader/ (key@ModifyIndex), service ids, session ids. */
  async writable(): Promise<ConsulWritable> {
    const kv = await this.call("GET", "/v1/kv/routeleader/?recurse");
    const services = await this.call("GET", "/v1/agent/services");
    const sessions = await this.call("GET", "/v1/session/list");
    return {
      kv: kv.status === 404 ? [] : (kv.json as { Key: string; ModifyIndex: number }[]).map((e) => `${e.Key}@${e.ModifyIndex}`),
      services: Object.keys((services.json as Record<string, unknown>) ?? {}),
      sessions: ((sessions.json as { ID: string }[]) ?? []).map((s) => s.ID),
    };
  }

  async stop(): Promise<void> {
    await this.process.stop(10_000);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

function rawCall(address: string, method: string, path: string, options: SecureConsulOptions, body?: string): Promise<{ status: number; json: unknown }> {
  const url = new URL(path, address);
  const headers: Record<string, string> = options.managementToken ? { "X-Consul-Token": options.managementToken } : {};
  return new Promise((resolve, reject) => {
    const onResponse = (res: import("node:http").IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = text;
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
    };
    const req =
      url.protocol === "https:" && options.tls
        ? httpsRequest(url, { method, headers, timeout: 5000, agent: new Agent({ ca: readPem(options.tls.caFile), cert: readPem(options.tls.clientCert), key: readPem(options.tls.clientKey) }) }, onResponse)
        : httpRequest(url, { method, headers, timeout: 5000 }, onResponse);
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function readPem(file: string): Buffer {
  return readFileSync(file);
}

export async function startSecureConsul(options: SecureConsulOptions): Promise<StartedSecureConsul> {
  const bin = binaryPath("consul");
  const [http, serfLan, serfWan, server] = await freePorts(4);
  const dataDir = mkdtempSync(join(tmpdir(), "rl-consul-secure-"));
  const tls = options.tls;
  const hcl = [
    `node_name = "secure"`,
    `datacenter = "dc1"`,
    `data_dir = "${dataDir}"`,
    `bind_addr = "127.0.0.1"`,
    `client_addr = "127.0.0.1"`,
    `advertise_addr = "127.0.0.1"`,
    `disable_update_check = true`,
    tls
      ? `ports { http = -1, https = ${http}, serf_lan = ${serfLan}, serf_wan = ${serfWan}, server = ${server}, dns = -1, grpc = -1, grpc_tls = -1 }`
      : `ports { http = ${http}, serf_lan = ${serfLan}, serf_wan = ${serfWan}, server = ${server}, dns = -1, grpc = -1, grpc_tls = -1 }`,
    tls
      ? `tls {\n  defaults {\n    ca_file = "${tls.caFile}"\n    cert_file = "${tls.serverCert}"\n    key_file = "${tls.serverKey}"\n    verify_incoming = true\n    verify_outgoing = true\n  }\n  internal_rpc { verify_server_hostname = true }\n${options.httpsWithoutClientCert ? "  https { verify_incoming = false }\n" : ""}}`
      : "",
    options.managementToken ? `acl {\n  enabled = true\n  default_policy = "deny"\n  enable_token_persistence = false\n  tokens { initial_management = "${options.managementToken}" }\n}` : "",
  ]
    .filter(Boolean)
    .join("\n");
  const configFile = join(dataDir, "agent.hcl");
  writeFileSync(configFile, hcl);
  const proc = new ManagedProcess(bin, ["agent", "-dev", `-config-file=${configFile}`], { name: "consul secure", env: { ...process.env, CHECKPOINT_DISABLE: "1" } });
  const address = `${tls ? "https" : "http"}://127.0.0.1:${http}`;
  const started = new StartedSecureConsul(address, proc, options, dataDir);
  try {
    await waitUntil(
      `secure consul at ${address}: leader elected and ACLs bootstrapped`,
      async () => {
        if (proc.hasExited) throw new Error(`exited early:\n${proc.output(30)}`);
        const leader = await started.call("GET", "/v1/status/leader");
        if (leader.status !== 200 || !leader.json) return undefined;
        // With ACLs on, the management token works only once the servers have it.
        const self = await started.call("GET", "/v1/agent/self");
        return self.status === 200 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  } catch (err) {
    await started.stop();
    throw new Error(`${(err as Error).message}\nlast output:\n${proc.output(30)}`);
  }
  return started;
}
