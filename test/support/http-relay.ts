import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A small HTTP relay on loopback in front of one upstream (a Consul agent, the metadata
 * mock): it counts every request by method and path, and can answer some requests itself
 * instead of forwarding them (e.g. refuse IMDSv2 tokens), or lose single answers on purpose
 * (see `inject`). Bodies stream through, so blocking queries keep working.
 */

export interface RelayedRequest {
  readonly time: number;
  readonly method: string;
  readonly path: string;
}

export interface Refusal {
  status: number;
  body?: string;
}

export interface HttpRelayOptions {
  upstream: string;
  /** Return a refusal to answer the request here, unforwarded. */
  refuse?: (req: { method: string; path: string }) => Refusal | undefined;
}

/**
 * What the relay does to a matching request instead of relaying it faithfully:
 * - `dropAnswer`: forward it, let the upstream answer in full (the request took effect), then
 *   destroy the client's socket instead of answering: "the answer was lost";
 * - `withholdAnswer`: forward it, let the upstream answer in full, and never answer the client
 *   (its own timeout ends the request): "the answer timed out";
 * - `reset`: destroy the client's socket without forwarding: "the request never arrived";
 * - `delay`: hold it `delayMs`, then forward it.
 */
export type RelayFault = "dropAnswer" | "withholdAnswer" | "reset" | "delay";

export interface RelayFaultOptions {
  /** How many matching requests get the fault (default 1). */
  times?: number;
  /** For `delay`. */
  delayMs?: number;
}

/** One injected fault: the requests it hit, and a wait for the next hit. */
export interface InjectedRelayFault {
  readonly fault: RelayFault;
  /** Requests this fault has hit so far (time = arrival at the relay). */
  readonly hits: readonly RelayedRequest[];
  /** Resolves with the `n`-th hit (1-based), already seen or future; rejects after `timeoutMs`. */
  waitForHit(timeoutMs: number, n?: number): Promise<RelayedRequest>;
  /** Stops hitting further requests. */
  cancel(): void;
}

interface FaultRule {
  fault: RelayFault;
  match: (req: { method: string; path: string }) => boolean;
  remaining: number;
  delayMs: number;
  hits: RelayedRequest[];
  waiters: (() => void)[];
}

export class StartedHttpRelay {
  private readonly log: RelayedRequest[] = [];
  private faults: FaultRule[] = [];

  constructor(
    private readonly server: http.Server,
    readonly endpoint: string,
  ) {}

  record(entry: RelayedRequest): void {
    this.log.push(entry);
  }

  requests(since = 0): RelayedRequest[] {
    return this.log.filter((r) => r.time >= since);
  }

  /**
   * Injects `fault` into the next `times` requests matching `match` (method and path with
   * its query string, e.g. PUT /v1/kv/…?acquire=…).
   */
  inject(fault: RelayFault, match: (req: { method: string; path: string }) => boolean, options: RelayFaultOptions = {}): InjectedRelayFault {
    const rule: FaultRule = { fault, match, remaining: options.times ?? 1, delayMs: options.delayMs ?? 0, hits: [], waiters: [] };
    this.faults.push(rule);
    return {
      fault,
      hits: rule.hits,
      waitForHit: (timeoutMs, n = 1) =>
        new Promise((resolve, reject) => {
          const check = () => {
            const hit = rule.hits[n - 1];
            if (!hit) return false;
            clearTimeout(timer);
            resolve(hit);
            return true;
          };
          const timer = setTimeout(() => {
            rule.waiters.splice(rule.waiters.indexOf(waiter), 1);
            reject(new Error(`relay ${this.endpoint}: fault ${fault} hit ${rule.hits.length} time(s), not ${n}, within ${timeoutMs} ms`));
          }, timeoutMs);
          const waiter = () => void check();
          if (!check()) rule.waiters.push(waiter);
        }),
      cancel: () => {
        rule.remaining = 0;
      },
    };
  }

  /** Removes every injected fault. */
  clearFaults(): void {
    for (const f of this.faults) f.remaining = 0;
    this.faults = [];
  }

  /** The fault to apply to this request, if any (counted as a hit). */
  takeFault(entry: RelayedRequest): FaultRule | undefined {
    const rule = this.faults.find((f) => f.remaining > 0 && f.match({ method: entry.method, path: entry.path }));
    if (!rule) return undefined;
    rule.remaining--;
    rule.hits.push(entry);
    for (const w of [...rule.waiters]) w();
    return rule;
  }

  /** Ends every open client connection (requests in flight, such as blocking queries, fail). */
  dropConnections(): void {
    this.server.closeAllConnections();
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export async function startHttpRelay(options: HttpRelayOptions): Promise<StartedHttpRelay> {
  const upstream = new URL(options.upstream);
  let relay: StartedHttpRelay | undefined;
  const server = http.createServer((req, res) => {
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const entry = { time: Date.now(), method, path };
    relay!.record(entry);
    const refusal = options.refuse?.({ method, path });
    if (refusal) {
      const body = refusal.body ?? "";
      res.writeHead(refusal.status, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const fault = relay!.takeFault(entry);
    if (fault?.fault === "reset") {
      req.socket.destroy();
      return;
    }
    const forward = () => {
      const up = http.request({ host: upstream.hostname, port: upstream.port, method, path, headers: { ...req.headers, host: upstream.host } }, (r) => {
        if (fault?.fault === "dropAnswer" || fault?.fault === "withholdAnswer") {
          // The upstream acted on the request; its answer is read in full and thrown away.
          r.resume();
          if (fault.fault === "dropAnswer") r.on("end", () => req.socket.destroy());
          return;
        }
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on("error", (err) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end(`relay: ${err.message}`);
      });
      res.on("close", () => up.destroy());
      req.pipe(up);
    };
    if (fault?.fault === "delay") setTimeout(forward, fault.delayMs);
    else forward();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  relay = new StartedHttpRelay(server, `http://127.0.0.1:${port}`);
  return relay;
}
