import { createEc2Client, awsClientOptions } from "./aws/index.js";
import { systemClock, type Clock } from "./clock.js";
import type { Config } from "./config/index.js";
import { ConsulAclError, ConsulApi, ConsulConnection, ConsulUnavailableError, resolveConsulSettings } from "./consul/index.js";
import { Election, livenessCheckId, type ElectionEvent } from "./election/index.js";
import { EXIT, ExitError } from "./exit-codes.js";
import { checkConsulId, checkTtlMs, HealthMonitor } from "./health/index.js";
import { InstanceMetadata, type Identity } from "./identity/index.js";
import type { Logger } from "./observe/log.js";
import { RouteController } from "./routes/controller.js";
import { VERSION } from "./version.js";

export interface RunOptions {
  log: Logger;
  dryRun: boolean;
  /** One claim pass, then release and exit. */
  once: boolean;
  clock?: Clock;
  /** Resolves (or aborts) when the agent should stop; default: SIGTERM or SIGINT. */
  stopSignal?: AbortSignal;
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
    if (self.server) log.warn({ step: "consul" }, "the local Consul agent is a server: sessions are lost when it is partitioned (hashicorp/consul#20424); run a client agent on NAT nodes");
    return { api, conn, node: self.nodeName };
  } catch (err) {
    conn.close();
    if (err instanceof ConsulAclError) throw new ExitError(`Consul at ${api.address} refused the ACL token: ${err.message}`, EXIT.consul, { cause: err });
    if (err instanceof ConsulUnavailableError) throw new ExitError(`Consul agent unreachable at ${api.address}: ${err.message}`, EXIT.consul, { cause: err });
    throw err;
  }
}

export function serviceIdOf(identity: Identity): string {
  return `routeleader-${identity.instanceId}`;
}

/** Service tags naming the routes this node leads, for the Consul UI. */
export function leaderTags(held: readonly string[]): string[] {
  return ["routeleader", ...[...held].sort().map((r) => `leader:${r}`)];
}

function stopOnSignals(log: Logger): AbortSignal {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ step: "stop", signal }, `${signal} received: releasing routes`);
    controller.abort(signal);
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  return controller.signal;
}

/**
 * Wires the agent together: identity (IMDSv2), Consul registration, health checks, route
 * writer, election; runs until told to stop, then releases every held route before it exits.
 */
export async function runAgent(config: Config, options: RunOptions): Promise<void> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  log.info({ step: "start", version: VERSION, config: config.source, cluster: config.cluster, routes: config.routes.map((r) => r.name), dryRun: options.dryRun }, "routeleader starting");
  const stopSignal = options.stopSignal ?? stopOnSignals(log);

  const imdsStarted = Date.now();
  const imds = new InstanceMetadata({ endpoint: config.imds.endpoint, timeoutMs: config.imds.timeout });
  const identity = await imds.identity();
  log.info({ step: "identity", ...identity, endpoint: imds.endpoint, ms: Date.now() - imdsStarted }, "identity read from instance metadata (IMDSv2)");

  const ec2 = createEc2Client({ ...awsClientOptions(config, identity), maxAttempts: 1 });
  const routes = new RouteController({ ec2, config, identity, log, dryRun: options.dryRun });
  const prepareStarted = Date.now();
  await routes.prepare();
  log.info({ step: "routes", ms: Date.now() - prepareStarted }, "route tables resolved in the instance's VPC");

  const { api, conn } = await connectConsul(config, log);
  const serviceId = serviceIdOf(identity);
  const service = {
    id: serviceId,
    name: config.consul.serviceName,
    meta: { instanceId: identity.instanceId, az: identity.az, eni: identity.eniId, version: VERSION, cluster: config.cluster },
    address: identity.privateIp,
  };
  try {
    await api.registerService({
      ...service,
      tags: leaderTags([]),
      checks: [
        { id: livenessCheckId(serviceId), name: "routeleader liveness", ttlMs: config.election.livenessTtl, status: "critical", notes: "passed by the agent every livenessTtl/3" },
        ...Object.entries(config.checks).map(([name, check]) => ({ id: checkConsulId(serviceId, name), name: `${name} (${check.type})`, ttlMs: checkTtlMs(check), status: "critical" as const })),
      ],
    });
  } catch (err) {
    conn.close();
    throw new ExitError(`cannot register service ${serviceId} with Consul: ${(err as Error).message}`, err instanceof ConsulAclError ? EXIT.consul : EXIT.consul, { cause: err });
  }
  log.info({ step: "register", serviceId, checks: Object.keys(config.checks) }, "service registered in Consul");

  let election: Election | undefined;
  const health = new HealthMonitor({
    checks: { ...config.checks },
    consul: api,
    serviceId,
    log,
    clock,
    beforeFail: async (checkName) => {
      if (election) await election.releaseRoutes(election.routesUsingCheck(checkName), "checkFailed");
    },
    onPass: () => election?.refreshEligibility(),
  });
  election = new Election({ api, config, identity, clock, log, routes, health, serviceId, checkId: (name) => checkConsulId(serviceId, name) });

  let tagsWanted = "";
  const publishTags = (event: ElectionEvent) => {
    if (event.type !== "acquired" && event.type !== "released" && event.type !== "lost") return;
    const tags = leaderTags(election?.heldRoutes() ?? []);
    if (tags.join(",") === tagsWanted) return;
    tagsWanted = tags.join(",");
    // Re-registering without checks keeps the checks and their status.
    void api.registerService({ ...service, tags }).catch((err: Error) => log.warn({ err: err.message }, "could not update leader tags"));
  };
  election.on(publishTags);

  health.start();
  await election.start();
  log.info({ step: "ready", serviceId }, "agent running");

  try {
    if (options.once) {
      await election.whenSettled(config.election.lockDelay + config.aws.writeTimeout + 10_000, stopSignal);
    } else if (!stopSignal.aborted) {
      await new Promise<void>((resolve) => stopSignal.addEventListener("abort", () => resolve(), { once: true }));
    }
    const started = clock.now();
    const result = await election.stop(options.once ? "once" : "shutdown");
    log.info({ step: "stop", handedOver: result.handedOver, notTaken: result.notTaken, ms: Math.round(clock.now() - started) }, "routes released");
  } finally {
    await health.stop();
    await api.deregisterService(serviceId).catch((err: Error) => log.warn({ err: err.message }, "deregister failed"));
    conn.close();
    ec2.destroy();
    log.info({ step: "exit" }, "routeleader stopped");
  }
}
