import { request } from "node:http";
import { awsClientOptions, createEc2Client } from "../aws/index.js";
import type { Config } from "../config/index.js";
import { ConsulAclError, ConsulApi, ConsulConnection, ConsulUnavailableError, resolveConsulSettings } from "../consul/index.js";
import { parseHolder, routeKey, routesPrefix } from "../election/holder.js";
import { EXIT, ExitError, type ExitCode } from "../exit-codes.js";
import { InstanceMetadata } from "../identity/index.js";
import { parseListenAddress } from "../observe/listen-address.js";
import type { Logger } from "../observe/log.js";
import { HANDOVER_REQUEST_TTL_MS, handoverKey } from "../policy/index.js";
import { RouteController } from "../routes/controller.js";
import { renderStatusTable, statusRows, type StatusRow } from "./status.js";

async function withConsul<T>(config: Config, run: (api: ConsulApi) => Promise<T>): Promise<T> {
  const conn = new ConsulConnection(resolveConsulSettings(config.consul));
  const api = new ConsulApi(conn);
  try {
    return await run(api);
  } catch (err) {
    if (err instanceof ConsulAclError) throw new ExitError(`Consul at ${api.address} refused the ACL token: ${err.message}`, EXIT.consul, { cause: err });
    if (err instanceof ConsulUnavailableError) throw new ExitError(`Consul unreachable at ${api.address}: ${err.message}`, EXIT.consul, { cause: err });
    throw err;
  } finally {
    conn.close();
  }
}

/**
 * `routeleader status`: every route, its holder in Consul and its actual target in EC2, with
 * DRIFT where they disagree. Read-only: nothing is written to AWS or Consul. Returns the rows.
 */
export async function collectStatus(config: Config, log: Logger): Promise<StatusRow[]> {
  const identity = await new InstanceMetadata({ endpoint: config.imds.endpoint, timeoutMs: config.imds.timeout }).identity();
  const ec2 = createEc2Client({ ...awsClientOptions(config, identity), maxAttempts: 2 });
  try {
    // A read-only view: never touch the source/dest check, never write a route.
    const routes = new RouteController({ ec2, config: { ...config, sourceDestCheck: "ignore" }, identity, log, dryRun: true });
    await routes.prepare();
    const observations = await routes.observe();
    const entries = await withConsul(config, async (api) => (await api.kvRead(routesPrefix(config.cluster), { recurse: true, consistent: true })).entries);
    return statusRows(config, observations, entries);
  } finally {
    ec2.destroy();
  }
}

export async function printStatus(config: Config, log: Logger, json: boolean): Promise<ExitCode> {
  const rows = await collectStatus(config, log);
  process.stdout.write(json ? `${JSON.stringify({ cluster: config.cluster, drift: rows.some((r) => r.drift), routes: rows }, null, 2)}\n` : `${renderStatusTable(rows)}\n`);
  return rows.some((r) => r.drift) ? EXIT.drift : EXIT.ok;
}

/** POSTs an operator action to the local agent's HTTP endpoint (loopback only). */
export async function postToAgent(config: Config, action: "drain" | "undrain"): Promise<string> {
  const address = parseListenAddress(config.http.listen);
  if (!address) throw new ExitError(`cannot ${action}: the agent's HTTP endpoint is disabled (http.listen is '')`, EXIT.usage);
  return new Promise((resolve, reject) => {
    const req = request({ host: address.host, port: address.port, path: `/${action}`, method: "POST", timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8").trim();
        if (res.statusCode === 200) resolve(body);
        else reject(new ExitError(`${action} refused by the agent at ${address.host}:${address.port}: HTTP ${res.statusCode}: ${body}`, EXIT.failure));
      });
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 30 s")));
    req.on("error", (err) => reject(new ExitError(`cannot reach the agent at ${address.host}:${address.port} to ${action}: ${(err as NodeJS.ErrnoException).code ?? err.message} (is routeleader running?)`, EXIT.failure)));
    req.end();
  });
}

/**
 * `routeleader handover ROUTE [--to INSTANCE]`: asks the holder to release the route (and
 * everyone but INSTANCE to stay back) through a request key in Consul; waits, bounded, for
 * the new holder. Works from any node.
 */
export async function requestHandover(config: Config, route: string, to: string | undefined, waitMs = 20_000): Promise<{ from: string | null; to: string | null; ms: number }> {
  if (!config.routes.some((r) => r.name === route)) throw new ExitError(`unknown route "${route}" (configured: ${config.routes.map((r) => r.name).join(", ")})`, EXIT.usage);
  return withConsul(config, async (api) => {
    const key = routeKey(config.cluster, route);
    const current = (await api.kvRead(key, { consistent: true })).entries[0];
    const from = current?.session ? (parseHolder(current.value)?.instanceId ?? null) : null;
    if (to && from === to) return { from, to, ms: 0 };
    const started = Date.now();
    const until = started + HANDOVER_REQUEST_TTL_MS;
    await api.kvPut(handoverKey(config.cluster, route), JSON.stringify({ ...(to ? { to } : {}), ...(from ? { from } : {}), until, requestedAt: new Date(started).toISOString() }));
    let index = 0;
    while (Date.now() - started < waitMs) {
      const read = await api.kvRead(key, { index, waitMs: 2000 });
      index = read.index;
      const entry = read.entries[0];
      const holder = entry?.session ? parseHolder(entry.value)?.instanceId : undefined;
      if (holder && holder !== from && (!to || holder === to)) return { from, to: holder, ms: Date.now() - started };
    }
    throw new ExitError(`handover of ${route} requested, but no ${to ? `holder ${to}` : "new holder"} within ${waitMs} ms (the request stays for ${HANDOVER_REQUEST_TTL_MS / 1000} s)`, EXIT.failure);
  });
}
