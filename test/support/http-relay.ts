import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A small HTTP relay on loopback in front of one upstream (a Consul agent, the metadata
 * mock): it counts every request by method and path, and can answer some requests itself
 * instead of forwarding them (e.g. refuse IMDSv2 tokens). Bodies stream through, so blocking
 * queries keep working.
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

export class StartedHttpRelay {
  private readonly log: RelayedRequest[] = [];

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
    relay!.record({ time: Date.now(), method, path });
    const refusal = options.refuse?.({ method, path });
    if (refusal) {
      const body = refusal.body ?? "";
      res.writeHead(refusal.status, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const up = http.request({ host: upstream.hostname, port: upstream.port, method, path, headers: { ...req.headers, host: upstream.host } }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", (err) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`relay: ${err.message}`);
    });
    res.on("close", () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  relay = new StartedHttpRelay(server, `http://127.0.0.1:${port}`);
  return relay;
}
