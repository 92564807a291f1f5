import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { DescribeInstancesCommand, DescribeNetworkInterfacesCommand, EC2Client, UnassignPrivateIpAddressesCommand } from "@aws-sdk/client-ec2";

/**
 * A fault-injection HTTP proxy in front of moto. moto stays the source of truth; the proxy
 * adds what moto does not model and records every call:
 * - a log of every call (time, caller, service, action, params, status), mutating ones marked;
 * - RequestLimitExceeded (HTTP 503) or any other error for the first N calls of an action;
 * - 5xx bursts, delayed answers, and hooks that change moto's state just before a call;
 * - DescribeRouteTables rewritten so a route whose target instance is stopped or terminated
 *   reads `blackhole`, as on AWS (moto always says `active`);
 * - optionally both InstanceId and NetworkInterfaceId on instance routes, as on AWS;
 * - EC2 DryRun requests answered DryRunOperation, unexecuted (moto ignores the flag);
 * - AssignPrivateIpAddresses with EC2's reassignment rules: an address another ENI holds is
 *   refused (InvalidParameterValue) unless AllowReassignment=true, which first takes it from that
 *   ENI (moto adds it to the second ENI and leaves it on the first);
 * - AssociateAddress with PrivateIpAddress remembered and DescribeAddresses answered with that
 *   address (moto associates an EIP with the whole ENI and reports its primary address);
 * - Auto Scaling CompleteLifecycleAction / RecordLifecycleActionHeartbeat answered and
 *   recorded (moto answers 500).
 *
 * Callers are told apart by endpoint path: point a client at `endpointFor("node-a")`
 * (the SDK keeps the path; the proxy strips it), or send an `x-routeleader-caller` header.
 */

export interface ProxyCall {
  /** Date.now() when the request arrived. */
  readonly time: number;
  /** Date.now() when the proxy had sent its answer (after upstream answered, for a forwarded call). */
  readonly answeredAt: number;
  readonly caller: string;
  /** From the SigV4 credential scope: "ec2", "autoscaling", … */
  readonly service: string;
  readonly action: string;
  readonly params: Readonly<Record<string, string>>;
  readonly mutating: boolean;
  readonly status: number;
  /** What the proxy did instead of (or on top of) forwarding: "throttled", "5xx", "answered", "rewritten". */
  readonly injected?: string;
  /** The request body of a JSON-protocol call (EventBridge, …), whose action comes from X-Amz-Target. */
  readonly json?: unknown;
}

export interface InjectedError {
  status: number;
  code: string;
  message: string;
}

/** EC2 latencies as seen from an instance (ReplaceRoute ~100–300 ms, Describe ~100 ms), for the fault lab's AWS-like mode. */
export const AWS_LIKE_LATENCY: Record<string, readonly [number, number]> = {
  ReplaceRoute: [100, 300],
  CreateRoute: [100, 300],
  "Describe*": [80, 120],
};

export interface FaultProxyOptions {
  /** moto's endpoint, e.g. http://127.0.0.1:5055. */
  upstream: string;
  /** Caller name for requests that carry none. */
  defaultCaller?: string;
  /** Report routes to stopped/terminated instances as blackhole (default true). */
  blackholeStoppedTargets?: boolean;
  /** Fill InstanceId and NetworkInterfaceId of instance routes, as AWS does (default false). */
  fillRouteTargets?: boolean;
  /** Where to listen; default 127.0.0.1 on a free port (a namespace address in the fault lab). */
  host?: string;
  port?: number;
}

const MUTATING = /^(Create|Replace|Delete|Modify|Associate|Disassociate|Run|Terminate|Stop|Start|Attach|Detach|Complete|Record|Put|Set|Update|Reboot|Assign|Unassign|Enable|Disable)/;

/** Which calls a rule fails: by parameters (e.g. one route table) and caller (one node). */
export type CallMatch = (params: Readonly<Record<string, string>>, caller: string) => boolean;

interface Rule {
  /** One action, several, or any (undefined). */
  action: string | readonly string[] | undefined;
  /** Only calls satisfying this are failed. */
  match?: CallMatch;
  remaining: number;
  error: InjectedError;
  label: string;
  /** A fault that lasts a time rather than a number of calls (see failDuring). */
  window?: { ms: number; opensAt?: number };
}

/** A time-bounded fault: when it opened and when it closes (undefined until the first matching call, for `from: "firstMatch"`). */
export interface FaultWindow {
  readonly opensAt: number | undefined;
  readonly closesAt: number | undefined;
}

/** EC2's answers for the common faults, for failWith / failDuring. */
export const EC2_ERRORS = {
  throttled: { status: 503, code: "RequestLimitExceeded", message: "Request limit exceeded." },
  internal: { status: 500, code: "InternalError", message: "An internal error has occurred" },
  unauthorized: { status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation." },
  invalidParameter: { status: 400, code: "InvalidParameterValue", message: "The instance has more than one network interface." },
} as const satisfies Record<string, InjectedError>;

interface Delay {
  action: string;
  remaining: number;
  ms: number;
}

interface Hook {
  action: string;
  remaining: number;
  run: (call: { caller: string; params: Readonly<Record<string, string>> }) => Promise<void>;
}

interface InstanceFacts {
  state: string;
  primaryEni?: string;
}

function ec2ErrorBody(error: InjectedError): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${error.code}</Code><Message>${error.message}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`;
}

function queryErrorBody(error: InjectedError, service: string): string {
  const type = error.status >= 500 ? "Receiver" : "Sender";
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="https://${service}.amazonaws.com/doc/"><Error><Type>${type}</Type><Code>${error.code}</Code><Message>${error.message}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

export class StartedFaultProxy {
  private readonly log: ProxyCall[] = [];
  private rules: Rule[] = [];
  private delays: Delay[] = [];
  private hooks: Hook[] = [];
  /** Added latency per action ("Describe*" matches a prefix), uniform in [min, max] ms; kept by clearFaults. */
  private latency: Record<string, readonly [number, number]> = {};
  private readonly lookups = new Map<string, EC2Client>();
  private blackhole: boolean;
  private fillTargets: boolean;
  /** Allocation id → the ENI and private address an AssociateAddress named. */
  private readonly eipPrivateIps = new Map<string, { eni: string; ip: string }>();

  constructor(
    private readonly server: http.Server,
    readonly endpoint: string,
    private readonly options: FaultProxyOptions,
  ) {
    this.blackhole = options.blackholeStoppedTargets ?? true;
    this.fillTargets = options.fillRouteTargets ?? false;
  }

  /** An endpoint whose calls are logged under `caller`. */
  endpointFor(caller: string): string {
    return `${this.endpoint}/caller/${encodeURIComponent(caller)}`;
  }

  /** Every call so far, oldest first; optionally only those matching. */
  calls(filter?: { caller?: string; action?: string; mutating?: boolean }): ProxyCall[] {
    return this.log.filter(
      (c) => (filter?.caller === undefined || c.caller === filter.caller) && (filter?.action === undefined || c.action === filter.action) && (filter?.mutating === undefined || c.mutating === filter.mutating),
    );
  }

  mutatingCalls(caller?: string): ProxyCall[] {
    return this.calls({ mutating: true, ...(caller !== undefined ? { caller } : {}) });
  }

  clearLog(): void {
    this.log.length = 0;
  }

  /** The next `count` calls of `action` get RequestLimitExceeded (HTTP 503), unforwarded. */
  throttle(action: string, count: number): void {
    this.failWith(action, count, { status: 503, code: "RequestLimitExceeded", message: "Request limit exceeded." }, "throttled");
  }

  /** The next `count` calls of `action` get this error, unforwarded (e.g. UnauthorizedOperation 403). */
  failWith(action: string | readonly string[] | undefined, count: number, error: InjectedError, label = error.code, match?: CallMatch): void {
    this.rules.push({ action, remaining: count, error, label, ...(match ? { match } : {}) });
  }

  /** The next `count` calls (of `action`, or of any action) get an HTTP 5xx, unforwarded. */
  serverErrors(count: number, options: { action?: string; status?: number; match?: CallMatch } = {}): void {
    const status = options.status ?? 500;
    this.failWith(options.action, count, { status, code: status === 503 ? "Unavailable" : "InternalError", message: "An internal error has occurred" }, "5xx", options.match);
  }

  /**
   * Every matching call (of `action`: one, several or any; by `caller`; satisfying `match`)
   * gets `error`, unforwarded, for `ms`: from now, or from the first matching call on
   * (`from: "firstMatch"`: "the new holder's writes fail for 5 s"). Returns the window.
   */
  failDuring(
    ms: number,
    options: { action?: string | readonly string[]; caller?: string; match?: CallMatch; error: InjectedError; label?: string; from?: "now" | "firstMatch" },
  ): FaultWindow {
    const { caller, match } = options;
    const both: CallMatch | undefined = caller === undefined ? match : (params, c) => c === caller && (!match || match(params, c));
    const rule: Rule = {
      action: options.action,
      remaining: Number.POSITIVE_INFINITY,
      error: options.error,
      label: options.label ?? (options.error.code === "RequestLimitExceeded" ? "throttled" : options.error.status >= 500 ? "5xx" : options.error.code),
      window: { ms, ...(options.from === "firstMatch" ? {} : { opensAt: Date.now() }) },
      ...(both ? { match: both } : {}),
    };
    this.rules.push(rule);
    const window = rule.window as { ms: number; opensAt?: number };
    return {
      get opensAt() {
        return window.opensAt;
      },
      get closesAt() {
        return window.opensAt === undefined ? undefined : window.opensAt + window.ms;
      },
    };
  }

  /** The next `count` calls of `action` are held `ms` before being forwarded (a slow or hung API). */
  delay(action: string, ms: number, count = 1): void {
    this.delays.push({ action, remaining: count, ms });
  }

  /**
   * Runs `hook` before forwarding the next `count` calls of `action`: e.g. change moto's
   * state between an agent's read and its write, to provoke a race.
   */
  beforeForward(action: string, hook: Hook["run"], count = 1): void {
    this.hooks.push({ action, remaining: count, run: hook });
  }

  clearFaults(): void {
    this.rules = [];
    this.delays = [];
    this.hooks = [];
  }

  /** Back to a plain pass-through: no faults, no latency, an empty log, moto's own route targets. */
  reset(): void {
    this.clearFaults();
    this.clearLog();
    this.fillTargets = false;
    this.latency = {};
  }

  /**
   * Holds every call of the named actions a random time in [min, max] ms before forwarding, for
   * as long as the proxy runs (clearFaults keeps it): e.g. AWS_LIKE_LATENCY, so that no system is
   * flattered by moto's instant answers (issue #16).
   */
  setLatency(latency: Record<string, readonly [number, number]>): void {
    this.latency = { ...latency };
  }

  setBlackholeStoppedTargets(on: boolean): void {
    this.blackhole = on;
  }

  setFillRouteTargets(on: boolean): void {
    this.fillTargets = on;
  }

  /** Parameters of every CompleteLifecycleAction the proxy answered. */
  completedLifecycleActions(): Readonly<Record<string, string>>[] {
    return this.calls({ action: "CompleteLifecycleAction" }).map((c) => c.params);
  }

  async stop(): Promise<void> {
    for (const client of this.lookups.values()) client.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  // ---------------------------------------------------------------- request handling

  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const time = Date.now();
    const body = await readBody(req);
    const url = new URL(req.url ?? "/", "http://proxy");
    const pathCaller = /^\/caller\/([^/]+)/.exec(url.pathname)?.[1];
    const caller = pathCaller ? decodeURIComponent(pathCaller) : String(req.headers["x-routeleader-caller"] ?? this.options.defaultCaller ?? "default");
    const forwardPath = pathCaller ? url.pathname.replace(/^\/caller\/[^/]+/, "") || "/" : url.pathname;
    const auth = String(req.headers.authorization ?? "");
    const scope = /Credential=[^/]+\/\d+\/([^/]+)\/([^/]+)\/aws4_request/.exec(auth);
    const region = scope?.[1] ?? "us-east-1";
    const service = scope?.[2] ?? "unknown";
    // JSON-protocol services (EventBridge, …) name the action in X-Amz-Target, e.g. AWSEvents.PutEvents.
    const target = typeof req.headers["x-amz-target"] === "string" ? req.headers["x-amz-target"] : undefined;
    const params: Record<string, string> = target ? {} : Object.fromEntries(new URLSearchParams(body.toString("utf8")));
    const json = target ? (JSON.parse(body.toString("utf8") || "{}") as unknown) : undefined;
    const action = params.Action ?? url.searchParams.get("Action") ?? target?.split(".").pop() ?? "";
    const record = (status: number, injected?: string) =>
      this.log.push({ time, answeredAt: Date.now(), caller, service, action, params, mutating: MUTATING.test(action), status, ...(injected ? { injected } : {}), ...(target ? { json } : {}) });

    const rule = this.rules.find((r) => this.applies(r, action, params, caller, time));
    if (rule) {
      rule.remaining--;
      if (rule.window && rule.window.opensAt === undefined) rule.window.opensAt = time;
      const text = service === "ec2" ? ec2ErrorBody(rule.error) : queryErrorBody(rule.error, service);
      res.writeHead(rule.error.status, { "content-type": "text/xml", "content-length": Buffer.byteLength(text) });
      res.end(text);
      record(rule.error.status, rule.label);
      return;
    }

    // EC2 answers a permitted DryRun request with DryRunOperation (HTTP 412) and does nothing;
    // moto ignores the flag and would execute the call.
    if (service === "ec2" && params.DryRun === "true") {
      const text = ec2ErrorBody({ status: 412, code: "DryRunOperation", message: "Request would have succeeded, but DryRun flag is set." });
      res.writeHead(412, { "content-type": "text/xml", "content-length": Buffer.byteLength(text) });
      res.end(text);
      this.log.push({ time, answeredAt: Date.now(), caller, service, action, params, mutating: false, status: 412, injected: "dry-run" });
      return;
    }

    const added = this.latency[action] ?? Object.entries(this.latency).find(([k]) => k.endsWith("*") && action.startsWith(k.slice(0, -1)))?.[1];
    if (added) await new Promise((resolve) => setTimeout(resolve, added[0] + Math.random() * (added[1] - added[0])));
    const delay = this.delays.find((d) => d.remaining > 0 && d.action === action);
    if (delay) {
      delay.remaining--;
      await new Promise((resolve) => setTimeout(resolve, delay.ms));
    }
    const hook = this.hooks.find((h) => h.remaining > 0 && h.action === action);
    if (hook) {
      hook.remaining--;
      await hook.run({ caller, params });
    }
    if (service === "autoscaling" && (action === "CompleteLifecycleAction" || action === "RecordLifecycleActionHeartbeat")) {
      const text = `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><${action}Result/><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`;
      res.writeHead(200, { "content-type": "text/xml", "content-length": Buffer.byteLength(text) });
      res.end(text);
      record(200, "answered");
      return;
    }

    if (service === "ec2" && action === "AssignPrivateIpAddresses") {
      const refused = await this.reassignPrivateIps(params, region);
      if (refused) {
        const text = ec2ErrorBody(refused);
        res.writeHead(refused.status, { "content-type": "text/xml", "content-length": Buffer.byteLength(text) });
        res.end(text);
        record(refused.status, "refused");
        return;
      }
    }
    const upstream = await this.forward(req, forwardPath + url.search, body);
    let text = upstream.body;
    let injected: string | undefined;
    if (service === "ec2" && action === "DescribeRouteTables" && upstream.status === 200 && (this.blackhole || this.fillTargets)) {
      const rewritten = await this.rewriteRoutes(text.toString("utf8"), region);
      if (rewritten !== undefined) {
        text = Buffer.from(rewritten, "utf8");
        injected = "rewritten";
      }
    }
    if (service === "ec2" && action === "AssociateAddress" && upstream.status === 200 && params.AllocationId) {
      if (params.PrivateIpAddress && params.NetworkInterfaceId) this.eipPrivateIps.set(params.AllocationId, { eni: params.NetworkInterfaceId, ip: params.PrivateIpAddress });
      else this.eipPrivateIps.delete(params.AllocationId);
    }
    if (service === "ec2" && action === "DescribeAddresses" && upstream.status === 200 && this.eipPrivateIps.size) {
      const rewritten = this.rewriteAddresses(text.toString("utf8"));
      if (rewritten !== undefined) {
        text = Buffer.from(rewritten, "utf8");
        injected = "rewritten";
      }
    }
    const headers = { ...upstream.headers, "content-length": String(text.length) };
    delete headers["transfer-encoding"];
    res.writeHead(upstream.status, headers);
    res.end(text);
    record(upstream.status, injected);
  }

  private applies(r: Rule, action: string, params: Readonly<Record<string, string>>, caller: string, time: number): boolean {
    if (r.remaining <= 0) return false;
    if (r.action !== undefined && (typeof r.action === "string" ? r.action !== action : !r.action.includes(action))) return false;
    if (r.match && !r.match(params, caller)) return false;
    if (r.window?.opensAt !== undefined && (time < r.window.opensAt || time >= r.window.opensAt + r.window.ms)) return false;
    return true;
  }

  private forward(req: http.IncomingMessage, path: string, body: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    const target = new URL(path, this.options.upstream);
    return new Promise((resolve, reject) => {
      const headers = { ...req.headers, host: target.host, "content-length": String(body.length) };
      const up = http.request(target, { method: req.method, headers }, (r) => {
        readBody(r).then((b) => resolve({ status: r.statusCode ?? 502, headers: r.headers, body: b }), reject);
      });
      up.on("error", reject);
      up.end(body);
    });
  }

  private lookupClient(region: string): EC2Client {
    let client = this.lookups.get(region);
    if (!client) {
      client = new EC2Client({ region, endpoint: this.options.upstream, credentials: { accessKeyId: "testing", secretAccessKey: "testing" }, maxAttempts: 1 });
      this.lookups.set(region, client);
    }
    return client;
  }

  /** Each address item of an allocation associated with a named private IP reports that IP. */
  private rewriteAddresses(xml: string): string | undefined {
    let changed = false;
    const result = xml.replace(/<item>((?:(?!<item>)[\s\S])*?)<\/item>/g, (whole, inner: string) => {
      const alloc = /<allocationId>([^<]+)<\/allocationId>/.exec(inner)?.[1];
      const eni = /<networkInterfaceId>([^<]+)<\/networkInterfaceId>/.exec(inner)?.[1];
      const named = alloc ? this.eipPrivateIps.get(alloc) : undefined;
      if (!named || named.eni !== eni) return whole;
      changed = true;
      const next = /<privateIpAddress>/.test(inner)
        ? inner.replace(/<privateIpAddress>[^<]*<\/privateIpAddress>/, `<privateIpAddress>${named.ip}</privateIpAddress>`)
        : `${inner}<privateIpAddress>${named.ip}</privateIpAddress>`;
      return `<item>${next}</item>`;
    });
    return changed ? result : undefined;
  }

  /** EC2's rules for a private IP another ENI holds; returns the refusal, or undefined after taking it over. */
  private async reassignPrivateIps(params: Readonly<Record<string, string>>, region: string): Promise<InjectedError | undefined> {
    const eni = params.NetworkInterfaceId;
    const wanted = Object.entries(params)
      .filter(([k]) => /^PrivateIpAddress\.\d+$/.test(k))
      .map(([, v]) => v);
    const client = this.lookupClient(region);
    const all = (await client.send(new DescribeNetworkInterfacesCommand({}))).NetworkInterfaces ?? [];
    for (const ip of wanted) {
      const other = all.find((n) => n.NetworkInterfaceId !== eni && n.PrivateIpAddresses?.some((a) => a.PrivateIpAddress === ip));
      if (!other) continue;
      const primary = other.PrivateIpAddresses?.find((a) => a.PrivateIpAddress === ip)?.Primary;
      if (primary || params.AllowReassignment !== "true") {
        return { status: 400, code: "InvalidParameterValue", message: `Address ${ip} is in use by ${other.NetworkInterfaceId}${primary ? " as its primary address" : ""}.` };
      }
      await client.send(new UnassignPrivateIpAddressesCommand({ NetworkInterfaceId: other.NetworkInterfaceId, PrivateIpAddresses: [ip] }));
    }
    return undefined;
  }

  /** Instance state and primary ENI by instance id, and the owning instance by ENI id. */
  private async instanceFacts(region: string): Promise<{ byInstance: Map<string, InstanceFacts>; instanceOfEni: Map<string, string> }> {
    const out = await this.lookupClient(region).send(new DescribeInstancesCommand({}));
    const byInstance = new Map<string, InstanceFacts>();
    const instanceOfEni = new Map<string, string>();
    for (const instance of (out.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
      if (!instance.InstanceId) continue;
      const primary = instance.NetworkInterfaces?.find((n) => n.Attachment?.DeviceIndex === 0)?.NetworkInterfaceId;
      byInstance.set(instance.InstanceId, { state: instance.State?.Name ?? "unknown", ...(primary ? { primaryEni: primary } : {}) });
      for (const eni of instance.NetworkInterfaces ?? []) if (eni.NetworkInterfaceId) instanceOfEni.set(eni.NetworkInterfaceId, instance.InstanceId);
    }
    return { byInstance, instanceOfEni };
  }

  /** Route items carry no nested <item>, so the innermost <item>…</item> with a target is a route. */
  private async rewriteRoutes(xml: string, region: string): Promise<string | undefined> {
    if (!/<(instanceId|networkInterfaceId)>/.test(xml)) return undefined;
    const { byInstance, instanceOfEni } = await this.instanceFacts(region);
    let changed = false;
    const result = xml.replace(/<item>((?:(?!<item>)[\s\S])*?)<\/item>/g, (whole, inner: string) => {
      if (!/<state>active<\/state>/.test(inner) && !/<state>blackhole<\/state>/.test(inner)) return whole;
      const instanceId = /<instanceId>([^<]+)<\/instanceId>/.exec(inner)?.[1];
      const eniId = /<networkInterfaceId>([^<]+)<\/networkInterfaceId>/.exec(inner)?.[1];
      const owner = instanceId ?? (eniId ? instanceOfEni.get(eniId) : undefined);
      if (!owner) return whole;
      let next = inner;
      const state = byInstance.get(owner)?.state;
      if (this.blackhole && (state === "stopped" || state === "terminated")) next = next.replace("<state>active</state>", "<state>blackhole</state>");
      if (this.fillTargets) {
        const eni = byInstance.get(owner)?.primaryEni;
        if (!eniId && eni) next = next.replace(/<instanceId>/, `<networkInterfaceId>${eni}</networkInterfaceId><instanceId>`);
        if (!instanceId) next = next.replace(/<networkInterfaceId>/, `<instanceId>${owner}</instanceId><networkInterfaceId>`);
      }
      if (next === inner) return whole;
      changed = true;
      return `<item>${next}</item>`;
    });
    return changed ? result : undefined;
  }
}

/** Starts the proxy, by default on a free loopback port. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<StartedFaultProxy> {
  const host = options.host ?? "127.0.0.1";
  let proxy: StartedFaultProxy | undefined;
  const server = http.createServer((req, res) => {
    proxy!.handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`fault proxy: ${(err as Error).message}`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  proxy = new StartedFaultProxy(server, `http://${host}:${port}`, options);
  return proxy;
}
