import { once } from "node:events";
import type { Config } from "./config/index.js";
import { ConsulApi, ConsulConnection, ConsulUnavailableError, ConsulAclError, resolveConsulSettings } from "./consul/index.js";
import { EXIT, ExitError } from "./exit-codes.js";
import { InstanceMetadata } from "./identity/index.js";
import type { Logger } from "./observe/log.js";
import { VERSION } from "./version.js";

export interface RunOptions {
  log: Logger;
  dryRun: boolean;
  /** One claim pass, then exit. */
  once: boolean;
}

/** Connects to the local Consul agent or fails with a message naming the address. */
async function connectConsul(config: Config, log: Logger): Promise<{ api: ConsulApi; conn: ConsulConnection; node: string }> {
  const conn = new ConsulConnection(resolveConsulSettings(config.consul));
  const api = new ConsulApi(conn);
  const started = Date.now();
  try {
    const self = await api.agentSelf(3000);
    const leader = await api.leader(3000);
    log.info({ step: "consul", address: api.address, node: self.nodeName, datacenter: self.datacenter, leader: leader || null, ms: Date.now() - started }, "connected to the local Consul agent");
    return { api, conn, node: self.nodeName };
  } catch (err) {
    conn.close();
    if (err instanceof ConsulAclError) throw new ExitError(`Consul at ${api.address} refused the ACL token: ${err.message}`, EXIT.consul, { cause: err });
    if (err instanceof ConsulUnavailableError) throw new ExitError(`Consul agent unreachable at ${api.address}: ${err.message}`, EXIT.consul, { cause: err });
    throw err;
  }
}

/**
 * Wires the agent together: identity (IMDSv2), Consul, then the per-route election and the
 * route writers; runs until SIGTERM/SIGINT, releasing every held route before it exits.
 */
export async function runAgent(config: Config, options: RunOptions): Promise<void> {
  const { log } = options;
  log.info({ step: "start", version: VERSION, config: config.source, cluster: config.cluster, routes: config.routes.length, dryRun: options.dryRun }, "routeleader starting");

  const imdsStarted = Date.now();
  const imds = new InstanceMetadata({ endpoint: config.imds.endpoint, timeoutMs: config.imds.timeout });
  const identity = await imds.identity();
  log.info({ step: "identity", ...identity, endpoint: imds.endpoint, ms: Date.now() - imdsStarted }, "identity read from instance metadata (IMDSv2)");

  const { conn } = await connectConsul(config, log);
  try {
    if (options.once) return;
    const stop = new AbortController();
    const onSignal = (signal: NodeJS.Signals) => {
      log.info({ step: "stop", signal }, "stop requested");
      stop.abort(signal);
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    log.info({ step: "ready" }, "agent running");
    await once(stop.signal, "abort");
    log.info({ step: "exit" }, "routeleader stopped");
  } finally {
    conn.close();
  }
}
