import { DescribeInstancesCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { awsClientOptions, createAutoScalingClient, createEc2Client } from "./aws/index.js";
import { systemClock, type Clock } from "./clock.js";
import type { Config } from "./config/index.js";
import { ConsulAclError, ConsulApi, ConsulConnection, ConsulRequestError, ConsulUnavailableError, GossipRejoin, resolveConsulSettings } from "./consul/index.js";
import { DisposerStack } from "./disposers.js";
import { Election, livenessCheckId, type ElectionEvent } from "./election/index.js";
import { FallbackWriter } from "./fallback-writer.js";
import { fallbackTargetId } from "./config/fallback.js";
import { EXIT, ExitError } from "./exit-codes.js";
import { PeerDiscovery } from "./discovery/index.js";
import { checkConsulId, checkTtlMs, createCheckRunner, HealthMonitor } from "./health/index.js";
import { createSourceDestReader } from "./health/source-dest-state.js";
import { createHookRunner } from "./hooks/index.js";
import { InstanceMetadata, type Identity } from "./identity/index.js";
import { completeLifecycleAction, watchForTermination } from "./lifecycle/index.js";
import { createMetrics, startStatusServer } from "./observe/index.js";
import { startEmfMetrics } from "./observe/emf.js";
import type { Logger } from "./observe/log.js";
import { PEER_META, PeerHeartbeat } from "./peers/heartbeat.js";
import { FailoverPolicy, resolvePreferredAzs } from "./policy/index.js";
import { RouteController } from "./routes/controller.js";
import { Reloader } from "./reload.js";
import { VERSION } from "./version.js";

export interface RunOptions {
  log: Logger;
  dryRun: boolean;
  /** One claim pass, then release and exit. */
  once: boolean;
  clock?: Clock;
  /** Resolves (or aborts) when the agent should stop; default: SIGTERM or SIGINT. */
  stopSignal?: AbortSignal;
  /** `--log-level` was given: a reload does not apply the file's logLevel. */
  logLevelFixed?: boolean;
}

/**
 * SIGHUP reloads the configuration (as keepalived and Consul do). Installed before anything
 * else, so a SIGHUP during start-up does not kill the process (Node's default): it is kept
 * and applied once the agent runs.
 */
function onHangup(log: Logger, once: boolean): { ready(reload: () => void): void; dispose(): void } {
  let reload: (() => void) | undefined;
  let pending = false;
  const handler = () => {
    if (once) return log.info({ step: "reload", trigger: "SIGHUP" }, "SIGHUP ignored: `once` does not reload");
    if (reload) return reload();
    pending = true;
    log.info({ step: "reload", trigger: "SIGHUP" }, "SIGHUP during start-up: the configuration is re-read once the agent runs");
  };
  process.on("SIGHUP", handler);
  return {
    ready(fn) {
      reload = fn;
      if (pending) fn();
      pending = false;
    },
    dispose: () => void process.off("SIGHUP", handler),
  };
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

/** Everything boot() made: read and proven, registered in Consul, source/dest check applied. */
interface Booted {
  config: Config;
  log: Logger;
  clock: Clock;
  identity: Identity;
  imds: InstanceMetadata;
  ec2: EC2Client;
  api: ConsulApi;
  routes: RouteController;
  discovery: PeerDiscovery | undefined;
  peers: PeerHeartbeat | undefined;
  preferredAz: Map<string, string | undefined>;
  serviceId: string;
  service: { id: string; name: string; meta: Record<string, string>; address: string };
}

/**
 * Start-up reads before it writes: identity, route tables, preferred AZs, discovery tags and
 * the Consul agent (token, reachability) are read and proven first; only then is the service
 * registered and the source/dest check fixed. Each resource registers its cleanup as it is made.
 */
async function boot(config: Config, log: Logger, clock: Clock, options: RunOptions, disposers: DisposerStack): Promise<Booted> {
  const { dryRun } = options;
  const conn = new ConsulConnection(resolveConsulSettings(config.consul));
  disposers.defer("close Consul connection", () => conn.close());
  const imdsStarted = Date.now();
  const imds = new InstanceMetadata({ endpoint: config.imds.endpoint, timeoutMs: config.imds.timeout });
  const identity = await imds.identity();
  log.info({ step: "identity", ...identity, endpoint: imds.endpoint, ms: Date.now() - imdsStarted }, "identity read from instance metadata (IMDSv2)");

  const ec2 = createEc2Client({ ...awsClientOptions(config, identity), maxAttempts: 1 });
  disposers.defer("close EC2 client", () => ec2.destroy());
  const routes = new RouteController({ ec2, config, identity, log, dryRun });
  const discovery = config.discovery.enabled ? new PeerDiscovery({ ec2, consul: new ConsulApi(conn), identity, config, log }) : undefined;
  const resolveStarted = Date.now();
  await routes.resolve();
  log.info({ step: "routes", ms: Date.now() - resolveStarted }, "route tables resolved in the instance's VPC");
  const preferredAz = await resolvePreferredAzs(config.routes, (r) => routes.tablesOf(r), ec2, log);
  if (discovery) log.info({ step: "discovery", tags: await discovery.peerTags() }, "peers are found by these tags");
  await routes.readSourceDestCheck();

  const { api } = await connectConsul(conn, log);
  // Bound before the service is registered, which advertises it. Without it the agent still
  // fails over, through Consul's gossip only, as the http endpoint is optional too.
  let peers = config.peers.enabled && !options.once ? new PeerHeartbeat({ api, config, instanceId: identity.instanceId, address: config.peers.address ?? identity.privateIp, clock, log }) : undefined;
  if (peers) {
    const started = await peers.start().then(
      () => true,
      (err: Error) => (log.error({ step: "peers", listen: peers?.advertised, err: err.message }, `peer heartbeats off: cannot bind ${peers?.advertised} (peers.address / peers.port): a dead holder is found by Consul's gossip only`), false),
    );
    if (started) disposers.defer("close the peer heartbeat socket", () => peers?.stop());
    else peers = undefined;
  }
  const serviceId = serviceIdOf(identity);
  const service = {
    id: serviceId,
    name: config.consul.serviceName,
    meta: { instanceId: identity.instanceId, az: identity.az, eni: identity.eniId, version: VERSION, cluster: config.cluster, ...(peers ? { [PEER_META]: peers.advertised } : {}) },
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
    throw new ExitError(`cannot register service ${serviceId} with Consul: ${(err as Error).message}`, EXIT.consul, { cause: err });
  }
  disposers.defer("deregister the service", () => api.deregisterService(serviceId));
  log.info({ step: "register", serviceId, checks: Object.keys(config.checks) }, "service registered in Consul");
  await routes.applySourceDestCheckMode();
  return { config, log, clock, identity, imds, ec2, api, routes, discovery, peers, preferredAz, serviceId, service };
}

/** The running parts, wired to each other; nothing is started yet. */
interface Wired {
  election: Election;
  fallback: FallbackWriter | undefined;
  health: HealthMonitor;
  reloader: Reloader;
  tasks: Promise<unknown>[];
}

async function wire(b: Booted, options: RunOptions, disposers: DisposerStack): Promise<Wired> {
  const { config, log, clock, identity, ec2, api, routes, serviceId, service, preferredAz } = b;
  const policy = new FailoverPolicy({ api, config, identity, clock, log, preferredAz });
  const metrics = createMetrics({ routes: config.routes.map((r) => r.name) });
  const hooks = createHookRunner({ hooks: config.hooks, routes: config.routes, instanceId: identity.instanceId, logger: log, clock });
  disposers.defer("finish running hooks", () => hooks.drain());

  let election: Election | undefined;
  const health = new HealthMonitor({
    checks: { ...config.checks },
    consul: api,
    serviceId,
    log,
    clock,
    runner: createCheckRunner({ nat: { sourceDestCheckOff: createSourceDestReader({ ec2, identity, clock, log, refreshMs: config.aws.sourceDestRefresh, maxStaleMs: config.aws.sourceDestMaxStale }) } }),
    // The check is already failing locally: the election releases its routes on its next cycle.
    beforeFail: async (checkName) => {
      if (election) await election.whenReleased(election.routesUsingCheck(checkName), BEFORE_FAIL_RELEASE_WAIT_MS);
    },
    onPass: () => election?.wake(),
  });
  disposers.defer("stop health checks", () => health.stop());
  const rejoin = new GossipRejoin({ api, clock, log });
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
    onSnapshot: (entries) => (policy.observe(entries), b.peers?.observe(entries)),
    cutOff: () => b.peers?.cutOff(),
    onNodeFailed: (reason) => rejoin.request(reason),
  });
  const running = election;
  policy.onChange(() => running.wake());

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
  disposers.defer("stop CloudWatch EMF metrics", startEmfMetrics({ config, identity, election: running, health, clock, log }).stop);
  // Reload keeps this current: route-moved events describe the routes as configured now.
  let liveConfig = config;
  const routeOf = (name: string) => {
    const route = liveConfig.routes.find((r) => r.name === name);
    if (!route) return undefined;
    const fallbackTo = fallbackTargetId(route);
    return { destination: route.destination, tables: [...routes.tablesOf(name)], ...(fallbackTo ? { fallback: fallbackTo } : {}) };
  };
  // Loaded only when enabled (the EventBridge SDK costs memory; issue #16).
  const events = config.observe.eventbridge.enabled
    ? (await import("./observe/route-events.js")).startRouteEvents({ cluster: config.cluster, bus: config.observe.eventbridge.bus, identity, client: awsClientOptions(config, identity), routeOf, log })
    : undefined;
  if (events) {
    running.on(events.listener("holder"));
    disposers.defer("send the last route-moved events", events.stop);
  }
  const fallback = options.once
    ? undefined
    : new FallbackWriter(config, { api, ec2, identity, clock, log, dryRun: options.dryRun, serviceId, checkId: (name) => checkConsulId(serviceId, name), main: { election: running, routes }, health: policy, listeners: events ? [events.listener("fallback")] : [] });

  const setDraining = async (on: boolean) => {
    await Promise.all([running.setDraining(on), fallback?.setDraining(on)]);
    return { draining: on, holds: running.heldRoutes() };
  };
  const reloader = new Reloader({ config, log, clock, logLevelFixed: options.logLevelFixed ?? false, api, ec2, serviceId, routes, health, election: running, policy, hooks, preferredAz, metrics, fallback: { reconfigure: (next: Config) => ((liveConfig = next), fallback?.reconfigure(next)) } });
  disposers.defer("finish reloads", () => reloader.close());
  const status = () => ({
    instanceId: identity.instanceId,
    az: identity.az,
    serviceId,
    draining: running.drainingReason !== undefined,
    routes: running.routeStates().map((s) => ({
      route: s.route,
      phase: s.phase,
      eligible: s.eligible,
      holder: s.holder?.instanceId ?? null,
      ...(s.holder?.fallback ? { fallback: s.holder.fallback } : {}),
      lockIndex: s.lockIndex ?? null,
      preferredAz: preferredAz.get(s.route) ?? null,
      ...(s.blocked ? { blocked: { reason: s.blocked.reason, forMs: Math.round(s.blocked.untilMs) } } : {}),
      ...(s.lastWriteError ? { lastWriteError: s.lastWriteError } : {}),
      ...(s.unconfirmed ? { unconfirmed: s.unconfirmed } : {}),
      ...(s.noSession ? { noSession: s.noSession } : {}),
      reason: s.reason,
    })),
    checks: health.states().map((c) => ({ name: c.name, passing: c.passing, output: c.output })),
    config: reloader.status(),
  });
  const leasePassed = () => running.routeStates().find((s) => s.phase === "holding" && s.held && clock.now() > running.leaseDeadline(s.held.session));
  const server = await startStatusServer({
    listen: config.http.listen,
    metrics,
    status,
    health: () => {
      const late = leasePassed();
      return late ? { ok: false, reason: `holding ${late.route} past its lease deadline (Consul unreachable?)` } : { ok: true };
    },
    logger: log,
    control: { drain: () => setDraining(true), undrain: () => setDraining(false), reload: () => reloader.reload("http") },
  }).catch((err: Error) => log.error({ err: err.message, listen: config.http.listen }, "http endpoint could not start; running without it"));
  if (server) disposers.defer("close the http endpoint", () => server.close());

  const background = new AbortController();
  const tasks: Promise<unknown>[] = [policy.run(background.signal)];
  if (b.peers) tasks.push(b.peers.run(background.signal));
  if (b.discovery) tasks.push(b.discovery.run(background.signal).catch((err: Error) => log.error({ step: "discovery", err: err.message }, "peer discovery stopped")));
  const autoscaling = createAutoScalingClient({ ...awsClientOptions(config, identity), maxAttempts: 2 });
  disposers.defer("close Auto Scaling client", () => autoscaling.destroy());
  if (config.lifecycle.watch && !options.once) {
    tasks.push(
      watchForTermination({ imds: b.imds, clock, log, intervalMs: config.lifecycle.pollInterval }, background.signal).then(async (notice) => {
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
  disposers.defer("stop background tasks", async () => {
    background.abort();
    await Promise.allSettled(tasks);
  });
  return { election: running, fallback, health, reloader, tasks };
}

/** Runs until told to stop (or, with `once`, until every route is settled), then releases every route. */
async function serve(b: Booted, w: Wired, options: RunOptions, stopSignal: AbortSignal, disposers: DisposerStack, hangup: ReturnType<typeof onHangup>): Promise<void> {
  const { config, log, clock } = b;
  w.health.start();
  await w.election.start();
  await w.fallback?.start();
  hangup.ready(() => void w.reloader.reload("SIGHUP").catch((err: Error) => log.error({ step: "reload", err: err.message, stack: err.stack }, "reload failed unexpectedly")));
  let stopped: Promise<unknown> | undefined;
  // The fallback writer's holds go first: the main election's stop fails liveness and ends its sessions.
  const stopElection = () => (stopped ??= (w.fallback?.stop() ?? Promise.resolve()).then(() => w.election.stop(options.once ? "once" : "shutdown")));
  disposers.defer("release routes", stopElection);
  log.info({ step: "ready", serviceId: b.serviceId }, "agent running");
  if (options.once) await w.election.whenSettled(config.election.lockDelay + config.aws.writeTimeout + 10_000, stopSignal);
  else if (!stopSignal.aborted) await new Promise<void>((resolve) => stopSignal.addEventListener("abort", () => resolve(), { once: true }));
  const started = clock.now();
  const result = (await stopElection()) as Awaited<ReturnType<Election["stop"]>>;
  log.info({ step: "stop", handedOver: result.handedOver, notTaken: result.notTaken, ms: Math.round(clock.now() - started) }, "routes released");
}

/**
 * The agent: boot (read and prove, then register), wire (the running parts), serve (until
 * told to stop, then release every held route). One stack of disposers undoes whatever was
 * made, whichever step fails.
 */
export async function runAgent(config: Config, options: RunOptions): Promise<void> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  log.info({ step: "start", version: VERSION, config: config.source, cluster: config.cluster, routes: config.routes.map((r) => r.name), dryRun: options.dryRun }, "routeleader starting");
  const stopSignal = options.stopSignal ?? stopOnSignals(log);
  const hangup = onHangup(log, options.once);
  const disposers = new DisposerStack(log);
  try {
    const booted = await boot(config, log, clock, options, disposers);
    const wired = await wire(booted, options, disposers);
    await serve(booted, wired, options, stopSignal, disposers, hangup);
  } finally {
    await disposers.disposeAll();
    hangup.dispose();
    log.info({ step: "exit" }, "routeleader stopped");
  }
}

/** beforeFail waits this long for the election to confirm the release of the check's routes. */
const BEFORE_FAIL_RELEASE_WAIT_MS = 4000;

/** This instance's aws:autoscaling:groupName tag, for CompleteLifecycleAction. */
async function ownAsgName(ec2: EC2Client, identity: Identity): Promise<string | undefined> {
  const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [identity.instanceId] }));
  return res.Reservations?.[0]?.Instances?.[0]?.Tags?.find((t) => t.Key === "aws:autoscaling:groupName")?.Value;
}
