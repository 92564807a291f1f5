import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "./log.js";
import { parseListenAddress } from "./listen-address.js";
import { processMetrics } from "./metrics.js";

export interface Health {
  ok: boolean;
  reason?: string;
}

export interface StatusServerOptions {
  /** `config.http.listen`: "host:port" ('' disables the endpoint; ":port" binds loopback). */
  listen: string;
  metrics: { render(): Promise<{ contentType: string; body: string }> };
  /** The body of /status, serialised as JSON. */
  status: () => unknown | Promise<unknown>;
  /** /healthz answers 200 when ok, else 503 with the reason. */
  health: () => Health;
  logger: Logger;
  /** Operator actions on POST /drain, /undrain; accepted only from a loopback peer. */
  control?: { drain(): Promise<unknown>; undrain(): Promise<unknown> };
}

export interface StatusServer {
  /** Base URL, e.g. http://127.0.0.1:9731 (the real port when 0 was asked for). */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

type Handler = (res: ServerResponse) => Promise<void> | void;

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

/**
 * The local HTTP endpoint: /metrics (Prometheus text), /status (JSON), /healthz. Binds to
 * loopback unless `http.listen` names another address; then it warns, because /status tells
 * anyone who can reach it which node holds which route. Returns undefined when disabled.
 */
export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer | undefined> {
  const address = parseListenAddress(options.listen);
  if (!address) {
    options.logger.info("http endpoint disabled (http.listen is '')");
    return undefined;
  }
  if (!address.loopback) {
    options.logger.warn({ listen: options.listen }, `http endpoint bound to non-loopback address ${address.host}: /metrics and /status are readable by anyone who can reach it`);
  }
  const routes: Record<string, Handler> = {
    "/metrics": async (res) => {
      const { contentType, body } = await options.metrics.render();
      send(res, 200, contentType, body);
    },
    "/status": async (res) => send(res, 200, "application/json; charset=utf-8", `${JSON.stringify(await options.status(), null, 2)}\n`),
    "/healthz": (res) => {
      const health = options.health();
      send(res, health.ok ? 200 : 503, "text/plain; charset=utf-8", health.ok ? "ok\n" : `unhealthy: ${health.reason ?? "no reason given"}\n`);
    },
  };
  const actions: Record<string, () => Promise<unknown>> = options.control ? { "/drain": options.control.drain, "/undrain": options.control.undrain } : {};
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const action = actions[path];
    if (action && req.method === "POST") {
      const peer = req.socket.remoteAddress ?? "";
      if (!/^(127\.|::1$|::ffff:127\.)/.test(peer)) return send(res, 403, "text/plain; charset=utf-8", `operator actions are accepted from loopback only (you are ${peer})\n`);
      try {
        const result = await action();
        options.logger.info({ action: path.slice(1), peer }, `operator action ${path.slice(1)}`);
        return send(res, 200, "application/json; charset=utf-8", `${JSON.stringify(result ?? { ok: true })}\n`);
      } catch (err) {
        return send(res, 500, "text/plain; charset=utf-8", `error: ${(err as Error).message}\n`);
      }
    }
    const handler = routes[path];
    if (!handler) return send(res, 404, "text/plain; charset=utf-8", `not found: ${path} (try /metrics, /status, /healthz)\n`);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return send(res, 405, "text/plain; charset=utf-8", "method not allowed\n");
    }
    try {
      await handler(res);
    } catch (err) {
      processMetrics.recordError("http");
      options.logger.error({ err, path }, "http endpoint handler failed");
      if (!res.headersSent) send(res, 500, "text/plain; charset=utf-8", `error: ${(err as Error).message}\n`);
    }
  };
  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(address.port, address.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = address.host.includes(":") ? `[${address.host}]` : address.host;
  options.logger.info({ listen: `${hostForUrl}:${port}` }, "http endpoint listening (/metrics, /status, /healthz)");
  return {
    url: `http://${hostForUrl}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
