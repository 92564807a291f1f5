import { DescribeInstancesCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { awsClientOptions, createAutoScalingClient, createEc2Client } from "./aws/index.js";
import { systemClock, type Clock } from "./clock.js";
import type { Config } from "./config/index.js";
import { ConsulAclError, ConsulApi, ConsulConnection, ConsulRequestError, ConsulUnavailableError, resolveConsulSettings } from "./consul/index.js";
import { Election, livenessCheckId, type ElectionEvent } from "./election/index.js";
import { EXIT, ExitError } from "./exit-codes.js";
import { PeerDiscovery } from "./discovery/index.js";
import { checkConsulId, checkTtlMs, createCheckRunner, HealthMonitor } from "./health/index.js";
import { createHookRunner } from "./hooks/index.js";
import { InstanceMetadata, type Identity } from "./identity/index.js";
import { completeLifecycleAction, watchForTermination } from "./lifecycle/index.js";
import { createMetrics, startStatusServer, type StatusServer } from "./observe/index.js";
import type { Logger } from "./observe/log.js";
import { FailoverPolicy, resolvePreferredAzs } from "./policy/index.js";
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
async function connectConsul(conn: ConsulConnection, log: Logger): Promise<{ api: ConsulApi; node: string }> {
  const api = new ConsulApi(conn);
  const started = Date.now();
  try {
    const self = await api.agentSelf(3000);
    const leader = await api.leader(3000);
    log.info({ step: "consul", address: api.address, node: self.nodeName, datacenter: self.datacenter, leader: leader || null, ms: Date.now() - started }, "connected to the local Consul agent");
    if (self.server) log.warn({ step: "consul" }, "the local Consul agent is a server: sessions are lost when it is partitioned (hashicorp/consul#20424); run a client agent on NAT nodes");
    return { api, node: self.nodeName };
  } catch (err) {
    if (err instanceof ConsulAclError) throw new ExitError(`Consul at ${api.address} refused the ACL token: ${err.message}`, EXIT.consul, { cause: err });
    if (err instanceof ConsulUnavailableError) throw new ExitError(`Consul agent unreachable at ${api.address}: ${err.message}`, EXIT.consul, { cause: err });
    if (err instanceof ConsulRequestError) throw new ExitError(`Consul at ${api.address} refused a request: ${err.message}`, EXIT.consul, { cause: err });
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

  // Start-up only reads until every check has passed: a bad token file, CA, permission or id
  // stops the agent before it writes anything to AWS or Consul.
  const conn = new ConsulConnection(resolveConsulSettings(config.consul));
  const imdsStarted = Date.now();
  const imds = new InstanceMetadata({ endpoint: config.imds.endpoint, timeoutMs: config.imds.timeout });
  const identity = await imds.identity().catch((err: unknown) => {
    conn.close();
    throw err;
  });
  log.info({ step: "identity", ...identity, endpoint: imds.endpoint, ms: Date.now() - imdsStarted }, "identity read from instance metadata (IMDSv2)");

  const ec2 = createEc2Client({ ...awsClientOptions(config, identity), maxAttempts: 1 });
  const routes = new RouteController({ ec2, config, identity, log, dryRun: options.dryRun });
  const discovery = config.discovery.enabled ? new PeerDiscovery({ ec2, consul: new ConsulApi(conn), identity, config, log }) : undefined;
  let preferredAz: Map<string, string | undefined>;
  try {
    const resolveStarted = Date.now();
    await routes.resolve();
    log.info({ step: "routes", ms: Date.now() - resolveStarted }, "route tables resolved in the instance's VPC");
    preferredAz = await resolvePreferredAzs(config.routes, (r) => routes.tablesOf(r), ec2, log);
    if (discovery) log.info({ step: "discovery", tags: await discovery.peerTags() }, "peers are found by these tags");
  } catch (err) {
    conn.close();
    ec2.destroy();
    throw err;
  }

  const { api } = await connectConsul(conn, log).catch((err: unknown) => {
    conn.close();
    ec2.destroy();
    throw err;
  });
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
    ec2.destroy();
    throw new ExitError(`cannot register service ${serviceId} with Consul: ${(err as Error).message}`, EXIT.consul, { cause: err });
  }
  log.info({ step: "register", serviceId, checks: Object.keys(config.checks) }, "service registered in Consul");
  try {
    await routes.applySourceDestCheckMode();
  } catch (err) {
    await api.deregisterService(serviceId).catch(() => undefined);
    conn.close();
    ec2.destroy();
    throw err;
  }

  const policy = new FailoverPolicy({ api, config, identity, clock, log, preferredAz });
  const metrics = createMetrics({ routes: config.routes.map((r) => r.name) });
  const hooks = createHookRunner({ hooks: config.hooks, routes: config.routes, instanceId: identity.instanceId, logger: log, clock });

  let election: Election | undefined;
  const health = new HealthMonitor({
    checks: { ...config.checks },
    consul: api,
    serviceId,
    log,
    clock,
    runner: createCheckRunner({ nat: { sourceDestCheckOff: cached(SOURCE_DEST_CACHE_MS, clock, () => sourceDestCheckOff(ec2, identity)) } }),
    beforeFail: async (checkName) => {
      if (election) await election.releaseRoutes(election.routesUsingCheck(checkName), "checkFailed");
    },
    onPass: () => election?.refreshEligibility(),
  });
  election = new Election({
    api,
    config,
    identity,
    clock,
    log,
    routes,
    health,
    serviceId,
    checkId: (name) => checkConsulId(serviceId, name),
    policy,
    onSnapshot: (entries) => policy.observe(entries),
  });
  const running = election;

  let tagsWanted = "";
  running.on((event: ElectionEvent) => {
    if (event.type !== "acquired" && event.type !== "released" && event.type !== "lost") return;
    const tags = leaderTags(running.heldRoutes());
    if (tags.join(",") === tagsWanted) return;
    tagsWanted = tags.join(",");
    // Re-registering without checks keeps the checks and their status.
    void api.registerService({ ...service, tags, meta: { ...service.meta, leads: running.heldRoutes().join(",") } }).catch((err: Error) => log.warn({ err: err.message }, "could not update leader tags"));
  });
  running.on(metrics.listener);
  running.on(hooks.listener);

  let draining = false;
  const setDraining = async (on: boolean) => {
    draining = on;
    await running.setDraining(on);
    return { draining: on, holds: running.heldRoutes() };
  };
  const status = () => ({
    instanceId: identity.instanceId,
    az: identity.az,
    serviceId,
    draining,
    routes: running.routeStates().map((s) => ({
      route: s.route,
      phase: s.phase,
      eligible: s.eligible,
      holder: s.observed?.holder?.instanceId && s.observed.session ? s.observed.holder.instanceId : null,
      lockIndex: s.held?.lockIndex ?? s.observed?.lockIndex ?? null,
      preferredAz: preferredAz.get(s.route) ?? null,
    })),
    checks: health.states().map((c) => ({ name: c.name, passing: c.passing, output: c.output })),
  });
  const leasePassed = () => running.routeStates().find((s) => s.phase === "holding" && s.held && clock.now() > running.leaseDeadline(s.held.session));
  let server: StatusServer | undefined;
  try {
    server = await startStatusServer({
      listen: config.http.listen,
      metrics,
      status,
      health: () => {
        const late = leasePassed();
        return late ? { ok: false, reason: `holding ${late.route} past its lease deadline (Consul unreachable?)` } : { ok: true };
      },
      logger: log,
      control: { drain: () => setDraining(true), undrain: () => setDraining(false) },
    });
  } catch (err) {
    log.error({ err: (err as Error).message, listen: config.http.listen }, "http endpoint could not start; running without it");
  }

  const background = new AbortController();
  const tasks: Promise<unknown>[] = [policy.run(background.signal)];
  if (discovery) {
    tasks.push(discovery.run(background.signal).catch((err: Error) => log.error({ step: "discovery", err: err.message }, "peer discovery stopped")));
  }
  const autoscaling = createAutoScalingClient({ ...awsClientOptions(config, identity), maxAttempts: 2 });
  if (config.lifecycle.watch && !options.once) {
    tasks.push(
      watchForTermination({ imds, clock, log, intervalMs: config.lifecycle.pollInterval }, background.signal).then(async (notice) => {
        if (!notice) return;
        const started = clock.now();
        log.warn({ step: "lifecycle", ...notice }, "termination notice: draining");
        await setDraining(true);
        const group = config.lifecycle.autoScalingGroup ?? (await ownAsgName(ec2, identity).catch(() => undefined));
        if (config.lifecycle.hookName && group) await completeLifecycleAction({ autoscaling, log }, { group, hook: config.lifecycle.hookName, instanceId: identity.instanceId });
        else if (config.lifecycle.hookName) log.error({ step: "lifecycle" }, "lifecycle hook configured but the Auto Scaling group is unknown (set lifecycle.autoScalingGroup)");
        log.info({ step: "lifecycle", ms: Math.round(clock.now() - started) }, "drained for termination");
      }),
    );
  }

  health.start();
  await running.start();
  log.info({ step: "ready", serviceId }, "agent running");

  try {
    if (options.once) {
      await running.whenSettled(config.election.lockDelay + config.aws.writeTimeout + 10_000, stopSignal);
    } else if (!stopSignal.aborted) {
      await new Promise<void>((resolve) => stopSignal.addEventListener("abort", () => resolve(), { once: true }));
    }
    const started = clock.now();
    const result = await running.stop(options.once ? "once" : "shutdown");
    log.info({ step: "stop", handedOver: result.handedOver, notTaken: result.notTaken, ms: Math.round(clock.now() - started) }, "routes released");
  } finally {
    background.abort();
    await health.stop();
    await hooks.drain();
    await Promise.allSettled(tasks);
    await server?.close();
    await api.deregisterService(serviceId).catch((err: Error) => log.warn({ err: err.message }, "deregister failed"));
    conn.close();
    ec2.destroy();
    autoscaling.destroy();
    log.info({ step: "exit" }, "routeleader stopped");
  }
}

/** This instance's aws:autoscaling:groupName tag, for CompleteLifecycleAction. */
async function ownAsgName(ec2: EC2Client, identity: Identity): Promise<string | undefined> {
  const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [identity.instanceId] }));
  return res.Reservations?.[0]?.Instances?.[0]?.Tags?.find((t) => t.Key === "aws:autoscaling:groupName")?.Value;
}

/** The nat check runs every second; the source/dest check state is re-read at most this often. */
const SOURCE_DEST_CACHE_MS = 60_000;

function cached<T>(ttlMs: number, clock: Clock, load: () => Promise<T>): () => Promise<T> {
  let value: { at: number; result: Promise<T> } | undefined;
  return () => {
    const now = clock.now();
    if (!value || now - value.at > ttlMs) {
      const result = load();
      value = { at: now, result };
      result.catch(() => (value = undefined));
    }
    return value.result;
  };
}

/** Source/destination check state of this instance, for the nat check. */
async function sourceDestCheckOff(ec2: EC2Client, identity: Identity): Promise<boolean> {
  const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [identity.instanceId] }));
  return res.Reservations?.[0]?.Instances?.[0]?.SourceDestCheck === false;
}
