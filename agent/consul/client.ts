import http from "node:http";
import https from "node:https";
import { formatDuration } from "../config/duration.js";
import { processMetrics, type CallOutcome, type CallRecorder } from "../observe/metrics.js";
import { blockingTimeoutMs } from "./blocking.js";
import type { ConsulConnection } from "./connection.js";
import { ConsulUnavailableError, describeConnectionError, toConsulError } from "./errors.js";

/** One KV entry as Consul returns it, with the value decoded from base64. */
export interface KvEntry {
  readonly key: string;
  readonly value: string | null;
  readonly session?: string;
  readonly lockIndex: number;
  readonly modifyIndex: number;
  readonly createIndex: number;
  readonly flags: number;
}

export interface KvRead {
  readonly entries: readonly KvEntry[];
  /** X-Consul-Index of the response (0 when absent). */
  readonly index: number;
  readonly knownLeader: boolean;
}

export interface SessionSpec {
  name: string;
  ttlMs: number;
  lockDelayMs: number;
  behavior: "release" | "delete";
  nodeChecks: readonly string[];
  serviceChecks: readonly string[];
}

export interface SessionInfo {
  readonly id: string;
  readonly node: string;
  readonly nodeChecks: readonly string[];
  readonly serviceChecks: readonly string[];
  readonly lockDelayNs: number;
  readonly behavior: string;
  readonly ttl: string;
}

export interface ServiceRegistration {
  id: string;
  name: string;
  tags: string[];
  meta: Record<string, string>;
  address?: string;
  /** TTL checks of this service: id, name, TTL in ms, initial status. Omit to keep the registered checks as they are. */
  checks?: { id: string; name: string; ttlMs: number; status: "passing" | "warning" | "critical"; notes?: string }[];
}

export interface Member {
  readonly name: string;
  readonly addr: string;
  /** Serf status: 1 alive, 2 leaving, 3 left, 4 failed. */
  readonly status: number;
  readonly tags: Record<string, string>;
  /** Serf LAN port. */
  readonly port?: number;
}

export type CheckStatus = "passing" | "warning" | "critical";

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface RequestOptions {
  /** The operation's name in consul_requests_total{op}: kv.acquire, session.create, … */
  op: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

const DEFAULT_TIMEOUT_MS = 5000;

function decodeEntry(raw: Record<string, unknown>): KvEntry {
  const value = typeof raw.Value === "string" ? Buffer.from(raw.Value, "base64").toString("utf8") : null;
  return {
    key: String(raw.Key),
    value,
    ...(typeof raw.Session === "string" && raw.Session ? { session: raw.Session } : {}),
    lockIndex: Number(raw.LockIndex ?? 0),
    modifyIndex: Number(raw.ModifyIndex ?? 0),
    createIndex: Number(raw.CreateIndex ?? 0),
    flags: Number(raw.Flags ?? 0),
  };
}

type RawServiceEntry = {
  Node: { Node: string; Address?: string };
  Service: { ID: string; Address?: string; Tags: string[]; Meta: Record<string, string> };
  Checks: { CheckID: string; Status: string; Output: string; ServiceID: string }[];
};

/** One instance of a service, with its node and checks, from the health API. */
export interface ServiceInstance {
  readonly node: string;
  readonly serviceId: string;
  readonly address: string;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  readonly checks: readonly { readonly id: string; readonly status: CheckStatus; readonly output: string; readonly serviceId: string }[];
}

function decodeServiceEntry(e: RawServiceEntry): ServiceInstance {
  return {
    node: e.Node.Node,
    serviceId: e.Service.ID,
    address: e.Service.Address || e.Node.Address || "",
    tags: e.Service.Tags ?? [],
    meta: e.Service.Meta ?? {},
    checks: e.Checks.map((c) => ({ id: c.CheckID, status: c.Status as CheckStatus, output: c.Output, serviceId: c.ServiceID })),
  };
}

type RawSession = { ID: string; Node: string; NodeChecks?: string[] | null; ServiceChecks?: { ID: string }[] | null; LockDelay: number; Behavior: string; TTL: string };

function decodeSession(s: RawSession): SessionInfo {
  return {
    id: s.ID,
    node: s.Node,
    nodeChecks: s.NodeChecks ?? [],
    serviceChecks: (s.ServiceChecks ?? []).map((c) => c.ID),
    lockDelayNs: s.LockDelay,
    behavior: s.Behavior,
    ttl: s.TTL,
  };
}

/**
 * A small typed client: one method per Consul endpoint routeleader uses. Each call takes a
 * timeout (and optionally an AbortSignal); there are no retries in here: retry policy lives
 * in the runners, under their deadlines. Sessions are created over raw HTTP because the
 * `consul` npm package drops `NodeChecks` and `ServiceChecks`.
 */
export class ConsulApi {
  /** `metrics`: where every request is counted (consul_requests_total); default the process's metrics. */
  constructor(
    private readonly conn: ConsulConnection,
    private readonly metrics: CallRecorder = processMetrics,
  ) {}

  /** Counts one request by its operation and outcome; a failure also counts in errors_total{component="consul"}. */
  private count(op: string, outcome: CallOutcome): void {
    this.metrics.recordConsulRequest(op, outcome);
    if (outcome === "error" || outcome === "timeout") this.metrics.recordError("consul");
  }

  private async track<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      const result = await run();
      this.count(op, "ok");
      return result;
    } catch (err) {
      this.count(op, consulOutcome(err));
      throw err;
    }
  }

  get address(): string {
    return this.conn.url.origin;
  }

  /** One HTTP request; counted by `call`/`kvRead` (which know whether the answer is a success). */
  private request(method: string, path: string, options: RequestOptions): Promise<RawResponse> {
    const url = new URL(path, this.conn.url);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v === undefined || v === false) continue;
      url.searchParams.set(k, v === true ? "" : String(v));
    }
    const target = `${url.pathname}${url.search.replace(/=(?=&|$)/g, "")}`;
    const transport = url.protocol === "https:" ? https : http;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise<RawResponse>((resolve, reject) => {
      const headers: Record<string, string> = {};
      if (this.conn.token) headers["X-Consul-Token"] = this.conn.token;
      if (options.body !== undefined) {
        headers["Content-Type"] = "application/json";
        // Consul's session/create decodes a body only when Content-Length > 0: never chunk.
        headers["Content-Length"] = String(Buffer.byteLength(options.body));
      }
      const req = transport.request(
        { host: url.hostname, port: url.port, path: target, method, headers, agent: this.conn.agent, signal: options.signal },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject);
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new ConsulUnavailableError(`consul ${method} ${url.pathname}: no answer within ${timeoutMs} ms`)));
      req.on("error", (err) => {
        if (err instanceof ConsulUnavailableError || err.name === "AbortError") reject(err);
        else reject(new ConsulUnavailableError(`consul ${method} ${url.pathname} at ${this.conn.url.origin}: ${describeConnectionError(err)}`));
      });
      if (options.body !== undefined) req.write(options.body);
      req.end();
    });
  }

  private call(method: string, path: string, options: RequestOptions): Promise<RawResponse> {
    return this.track(options.op, async () => {
      const res = await this.request(method, path, options);
      if (res.status < 200 || res.status >= 300) throw toConsulError(method, path, res.status, res.body);
      return res;
    });
  }

  private async json<T>(method: string, path: string, options: RequestOptions): Promise<T> {
    const res = await this.call(method, path, options);
    return JSON.parse(res.body) as T;
  }

  // ------------------------------------------------------------------ status, agent

  /** The current Raft leader's address, or "" when the cluster has none. */
  async leader(timeoutMs?: number): Promise<string> {
    return this.json<string>("GET", "/v1/status/leader", { op: "status.leader", timeoutMs });
  }

  async agentSelf(timeoutMs?: number): Promise<{ nodeName: string; datacenter: string; server: boolean }> {
    const self = await this.json<{ Config: { NodeName: string; Datacenter: string; Server: boolean } }>("GET", "/v1/agent/self", { op: "agent.self", timeoutMs });
    return { nodeName: self.Config.NodeName, datacenter: self.Config.Datacenter, server: self.Config.Server };
  }

  async registerService(reg: ServiceRegistration): Promise<void> {
    // The package's typings mark `timeout` required on every check, which TTL checks do not take.
    type RegisterOptions = Parameters<ConsulConnection["client"]["agent"]["service"]["register"]>[0];
    const options = {
      id: reg.id,
      name: reg.name,
      tags: reg.tags,
      meta: reg.meta,
      ...(reg.address ? { address: reg.address } : {}),
      // node-consul reads a service check's id from `checkid`, not `id`.
      checks: reg.checks?.map((c) => ({
        checkid: c.id,
        name: c.name,
        ttl: formatDuration(c.ttlMs),
        status: c.status,
        ...(c.notes ? { notes: c.notes } : {}),
      })),
    } as unknown as RegisterOptions;
    await this.track("agent.service.register", () =>
      this.conn.client.agent.service.register(options).catch((err: unknown) => {
        throw this.npmError("PUT", "/v1/agent/service/register", err);
      }),
    );
  }

  async deregisterService(id: string): Promise<void> {
    await this.call("PUT", `/v1/agent/service/deregister/${encodeURIComponent(id)}`, { op: "agent.service.deregister" });
  }

  /**
   * Registers (or re-registers, same id) one TTL check of a service. Re-registering a check
   * with the status it has keeps every session bound to it: only a critical status or a
   * deregistration invalidates them.
   */
  async registerCheck(check: { id: string; name: string; serviceId: string; ttlMs: number; status: CheckStatus; notes?: string }, timeoutMs?: number): Promise<void> {
    await this.call("PUT", "/v1/agent/check/register", {
      op: "agent.check.register",
      body: JSON.stringify({ ID: check.id, Name: check.name, ServiceID: check.serviceId, TTL: formatDuration(check.ttlMs), Status: check.status, ...(check.notes ? { Notes: check.notes } : {}) }),
      timeoutMs,
    });
  }

  /** Deregisters one check: every session bound to it is invalidated (release its keys first). */
  async deregisterCheck(checkId: string, timeoutMs?: number): Promise<void> {
    await this.call("PUT", `/v1/agent/check/deregister/${encodeURIComponent(checkId)}`, { op: "agent.check.deregister", timeoutMs });
  }

  /** Sets a TTL check's status and its output (what the Consul UI shows). */
  async updateTtlCheck(checkId: string, status: CheckStatus, output: string, timeoutMs?: number): Promise<void> {
    await this.call("PUT", `/v1/agent/check/update/${encodeURIComponent(checkId)}`, {
      op: "agent.check.update",
      body: JSON.stringify({ Status: status, Output: output }),
      timeoutMs,
    });
  }

  async join(address: string): Promise<void> {
    await this.track("agent.join", () =>
      this.conn.client.agent.join({ address }).catch((err: unknown) => {
        throw this.npmError("PUT", `/v1/agent/join/${address}`, err);
      }),
    );
  }

  async forceLeave(node: string): Promise<void> {
    await this.track("agent.force-leave", () =>
      this.conn.client.agent.forceLeave({ node }).catch((err: unknown) => {
        throw this.npmError("PUT", `/v1/agent/force-leave/${node}`, err);
      }),
    );
  }

  async members(): Promise<Member[]> {
    const raw = (await this.track("agent.members", () =>
      this.conn.client.agent.members().catch((err: unknown) => {
        throw this.npmError("GET", "/v1/agent/members", err);
      }),
    )) as { Name: string; Addr: string; Port?: number; Status: number; Tags?: Record<string, string> }[];
    return raw.map((m) => ({ name: m.Name, addr: m.Addr, status: m.Status, tags: m.Tags ?? {}, ...(m.Port ? { port: m.Port } : {}) }));
  }

  /** Service instances with their checks (for AZ preference and `status`). */
  async healthService(service: string, options: { passing?: boolean; timeoutMs?: number } = {}): Promise<ServiceInstance[]> {
    const raw = await this.json<RawServiceEntry[]>("GET", `/v1/health/service/${encodeURIComponent(service)}`, {
      op: "health.service",
      query: { passing: options.passing },
      timeoutMs: options.timeoutMs,
    });
    return raw.map(decodeServiceEntry);
  }

  /** healthService as a blocking query from `index` (0: answer at once). */
  async watchHealthService(service: string, index: number, waitMs: number, signal?: AbortSignal): Promise<{ value: ServiceInstance[]; index: number }> {
    const res = await this.blockingGet<RawServiceEntry[]>("health.service.watch", `/v1/health/service/${encodeURIComponent(service)}`, index, waitMs, signal);
    return { value: res.value.map(decodeServiceEntry), index: res.index };
  }

  /** listSessions as a blocking query from `index` (0: answer at once). */
  async watchSessions(index: number, waitMs: number, signal?: AbortSignal): Promise<{ value: SessionInfo[]; index: number }> {
    const res = await this.blockingGet<RawSession[] | null>("session.list.watch", "/v1/session/list", index, waitMs, signal);
    return { value: (res.value ?? []).map(decodeSession), index: res.index };
  }

  /**
   * A GET that blocks until Consul's index passes `index` or `waitMs` ends; counted under its
   * own op (its latency is the wait).
   */
  private async blockingGet<T>(op: string, path: string, index: number, waitMs: number, signal?: AbortSignal): Promise<{ value: T; index: number }> {
    const blocking = index > 0;
    const res = await this.call("GET", path, {
      op,
      query: { index: blocking ? index : undefined, wait: blocking ? formatDuration(waitMs) : undefined },
      timeoutMs: blocking ? blockingTimeoutMs(waitMs) : DEFAULT_TIMEOUT_MS,
      signal,
    });
    return { value: JSON.parse(res.body) as T, index: Number(res.headers["x-consul-index"] ?? 0) };
  }

  // ------------------------------------------------------------------ sessions

  async createSession(spec: SessionSpec, timeoutMs?: number): Promise<string> {
    const body = {
      Name: spec.name,
      TTL: formatDuration(spec.ttlMs),
      // A duration string: a bare number below 1000 would be read as seconds.
      LockDelay: formatDuration(spec.lockDelayMs),
      Behavior: spec.behavior,
      NodeChecks: spec.nodeChecks,
      ServiceChecks: spec.serviceChecks.map((id) => ({ ID: id })),
    };
    const res = await this.json<{ ID: string }>("PUT", "/v1/session/create", { op: "session.create", body: JSON.stringify(body), timeoutMs });
    return res.ID;
  }

  /** Renews a session; returns the TTL Consul asks for (it may raise it under load). */
  async renewSession(id: string, timeoutMs?: number): Promise<string> {
    const res = await this.json<{ TTL: string }[]>("PUT", `/v1/session/renew/${id}`, { op: "session.renew", timeoutMs });
    return res[0]?.TTL ?? "";
  }

  async destroySession(id: string, timeoutMs?: number): Promise<void> {
    await this.call("PUT", `/v1/session/destroy/${id}`, { op: "session.destroy", timeoutMs });
  }

  async sessionInfo(id: string): Promise<SessionInfo | undefined> {
    const raw = await this.json<RawSession[] | null>("GET", `/v1/session/info/${id}`, { op: "session.info", query: { consistent: true } });
    return raw?.[0] ? decodeSession(raw[0]) : undefined;
  }

  /** Every live session of the datacenter, in one request (peers' health: a peer without one cannot hold a route). */
  async listSessions(timeoutMs?: number): Promise<SessionInfo[]> {
    const raw = await this.json<RawSession[] | null>("GET", "/v1/session/list", { op: "session.list", timeoutMs });
    return (raw ?? []).map(decodeSession);
  }

  // ------------------------------------------------------------------ KV

  /**
   * Reads a key or (recurse) a prefix. With `index`, a blocking query: the HTTP timeout
   * must exceed wait + wait/16, the random jitter Consul adds to every wait.
   */
  async kvRead(
    key: string,
    options: { recurse?: boolean; consistent?: boolean; index?: number; waitMs?: number; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<KvRead> {
    const blocking = options.index !== undefined && options.index > 0;
    const waitMs = options.waitMs ?? 5000;
    // A blocking read counts under its own op: its latency is the wait, not Consul's.
    return this.track(blocking ? "kv.watch" : options.consistent ? "kv.read.consistent" : "kv.read", () => this.kvReadOnce(key, options, blocking, waitMs));
  }

  private async kvReadOnce(key: string, options: { recurse?: boolean; consistent?: boolean; index?: number; timeoutMs?: number; signal?: AbortSignal }, blocking: boolean, waitMs: number): Promise<KvRead> {
    const res = await this.request("GET", `/v1/kv/${key}`, {
      op: "kv.read",
      query: {
        recurse: options.recurse,
        consistent: options.consistent,
        index: blocking ? options.index : undefined,
        wait: blocking ? formatDuration(waitMs) : undefined,
      },
      timeoutMs: options.timeoutMs ?? (blocking ? blockingTimeoutMs(waitMs) : DEFAULT_TIMEOUT_MS),
      signal: options.signal,
    });
    const index = Number(res.headers["x-consul-index"] ?? 0);
    const knownLeader = res.headers["x-consul-knownleader"] !== "false";
    if (res.status === 404) return { entries: [], index, knownLeader };
    if (res.status !== 200) throw toConsulError("GET", `/v1/kv/${key}`, res.status, res.body);
    const raw = JSON.parse(res.body) as Record<string, unknown>[];
    return { entries: raw.map(decodeEntry), index, knownLeader };
  }

  /** `?acquire=`: true when this session now holds the key. */
  async acquire(key: string, session: string, value: string, timeoutMs?: number): Promise<boolean> {
    return this.json<boolean>("PUT", `/v1/kv/${key}`, { op: "kv.acquire", query: { acquire: session }, body: value, timeoutMs });
  }

  /** `?release=`: no lock-delay. The body becomes the value, so send the holder JSON again. */
  async release(key: string, session: string, value: string, timeoutMs?: number): Promise<boolean> {
    return this.json<boolean>("PUT", `/v1/kv/${key}`, { op: "kv.release", query: { release: session }, body: value, timeoutMs });
  }

  async kvPut(key: string, value: string, timeoutMs?: number): Promise<boolean> {
    return this.json<boolean>("PUT", `/v1/kv/${key}`, { op: "kv.put", body: value, timeoutMs });
  }

  async kvDelete(key: string, options: { recurse?: boolean } = {}): Promise<void> {
    await this.call("DELETE", `/v1/kv/${key}`, { op: "kv.delete", query: { recurse: options.recurse } });
  }

  private npmError(method: string, path: string, err: unknown): Error {
    const e = err as { response?: { statusCode?: number; body?: unknown }; message?: string; code?: string };
    const status = e.response?.statusCode;
    if (status) return toConsulError(method, path, status, typeof e.response?.body === "string" ? e.response.body : (e.message ?? ""));
    return new ConsulUnavailableError(`consul ${method} ${path} at ${this.conn.url.origin}: ${e.code ?? e.message ?? String(err)}`);
  }
}

/** The outcome label of a failed Consul request. */
function consulOutcome(err: unknown): CallOutcome {
  const e = err as Error;
  if (e?.name === "AbortError") return "aborted";
  if (e instanceof ConsulUnavailableError && /no answer within/.test(e.message)) return "timeout";
  if (e instanceof ConsulUnavailableError && /HTTP 429/.test(e.message)) return "throttled";
  return "error";
}
