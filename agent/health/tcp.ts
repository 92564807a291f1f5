import net from "node:net";
import tls from "node:tls";
import type { CheckConfig } from "../config/schema.js";
import type { OneHost } from "./any-of.js";
import { errorText, formatLatency, quote, type CheckResult } from "./result.js";

type TcpCheck = OneHost<Extract<CheckConfig, { type: "tcp" }>>;

export interface TcpDeps {
  /** Extra TLS options (a private CA for tests or internal services). Certificates are verified. */
  tlsOptions?: tls.ConnectionOptions;
}

/**
 * Connects; with `send`, writes it; with `expect`, reads until the reply contains it. The
 * whole exchange, TLS handshake included, must finish within the timeout.
 */
export function runTcp(check: TcpCheck, deps: TcpDeps = {}, signal?: AbortSignal): Promise<CheckResult> {
  const target = `${check.tls ? "tls" : "tcp"} ${check.host}:${check.port}`;
  const started = performance.now();
  return new Promise((resolve) => {
    let reply = "";
    let done = false;
    const steps: string[] = [];
    const socket: net.Socket = check.tls
      ? tls.connect({ host: check.host, port: check.port, ...deps.tlsOptions })
      : net.connect({ host: check.host, port: check.port });

    const finish = (ok: boolean, detail: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      const ms = performance.now() - started;
      resolve({ ok, output: `${target}: ${[...steps, detail].filter(Boolean).join(", ")}, ${formatLatency(ms)}`, latencyMs: ms });
    };
    const onAbort = () => finish(false, "stopped");
    const timer = setTimeout(() => {
      const stage = steps.length === 0 ? "no connection" : check.expect !== undefined ? `expect ${quote(check.expect)} not seen (got ${quote(reply)})` : "no answer";
      finish(false, `${stage} within ${check.timeout} ms`);
    }, check.timeout);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });

    socket.once(check.tls ? "secureConnect" : "connect", () => {
      steps.push(check.tls ? "TLS handshake ok" : "connected");
      if (check.send === undefined) {
        if (check.expect === undefined) finish(true, "");
        return;
      }
      // Without `expect`, pass once the text has been handed to the kernel.
      socket.write(check.send, () => check.expect === undefined && finish(true, "sent"));
    });
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("utf8");
      if (check.expect !== undefined && reply.includes(check.expect)) finish(true, `expect ${quote(check.expect)} matched`);
    });
    socket.once("end", () => finish(false, check.expect === undefined ? "closed by the peer" : `closed before ${quote(check.expect)} (got ${quote(reply)})`));
    socket.once("error", (err) => finish(false, errorText(err)));
  });
}
