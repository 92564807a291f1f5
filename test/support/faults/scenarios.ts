import { execFileSync } from "node:child_process";
import { nsRun } from "../netns.js";
import { waitUntil } from "../process.js";
import type { FailoverSystem } from "./systems.js";
import type { ConsulGroup, Host, World } from "./world.js";

/**
 * Fault scenarios. `inject` breaks something about the current holder (or Consul, or EC2) and
 * returns the fault time and how to heal; the trial runner measures fault → route converged.
 */

export interface Fault {
  /** Date.now() when the fault took effect. */
  t0: number;
  /** Keep the fault this long after the route converged (partitions: to catch stale writes). */
  holdMs?: number;
  /**
   * After healing, every host must stay ready this long before the trial ends: Consul may still
   * declare a healed host failed (a suspicion timer started during the partition outlives it)
   * and invalidate its session seconds later, which would land in the next trial.
   */
  settleMs?: number;
  heal(): Promise<void>;
}

export interface Scenario {
  name: string;
  /** The route must move to another host (else: it must stay where it is). */
  failover: boolean;
  /** Route changes allowed from the fault until the system is steady again after healing. */
  maxRouteChanges: number;
  /** Only routeleader's own failure modes are compared with nothing. */
  routeleaderOnly?: boolean;
  /** Arms faults in the shared proxy (lanes always take turns now, see runLab; kept as documentation). */
  exclusive?: boolean;
  /** No route write from any host is allowed while the fault lasts. */
  noWritesDuringFault?: boolean;
  inject(world: World, system: FailoverSystem, holder: Host): Promise<Fault>;
}

function signalPids(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // exited meanwhile
    }
  }
}

function hubLink(world: World, h: Host, state: "up" | "down"): void {
  execFileSync("ip", ["-n", world.topology.hub.ns, "link", "set", h.node.hubVeth as string, state]);
}

/** Drops every packet except loopback and traffic with the hub (the EC2 API stays reachable, as in a VPC). */
function isolate(ns: string, hubAddr: string): void {
  const rules = [
    ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
    ["-A", "INPUT", "-s", hubAddr, "-j", "ACCEPT"],
    ["-A", "INPUT", "-j", "DROP"],
    ["-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"],
    ["-A", "OUTPUT", "-d", hubAddr, "-j", "ACCEPT"],
    ["-A", "OUTPUT", "-j", "DROP"],
  ];
  for (const r of rules) nsRun(ns, ["iptables", ...r]);
}

function unisolate(ns: string): void {
  nsRun(ns, ["iptables", "-F", "INPUT"]);
  nsRun(ns, ["iptables", "-F", "OUTPUT"]);
}

async function restartIfStopped(system: FailoverSystem, h: Host): Promise<void> {
  if (!system.running(h)) await system.start(h);
}

/** Freeze every process of the host, cut its link, kill them all: nothing can say goodbye. */
async function powerOff(world: World, h: Host): Promise<number> {
  const pids = world.pidsOf(h);
  const t0 = Date.now();
  signalPids(pids, "SIGSTOP");
  hubLink(world, h, "down");
  signalPids(pids, "SIGKILL");
  h.poweredOff = true;
  await Promise.all([h.consul?.process.waitForExit(10_000), h.aemm?.process.waitForExit(10_000)]);
  return t0;
}

async function powerOn(world: World, system: FailoverSystem, h: Host): Promise<void> {
  hubLink(world, h, "up");
  h.poweredOff = false;
  await world.startHostAemm(h);
  if (h.consul) await h.consul.restart();
  await system.start(h);
}

const healthCheck: Scenario = {
  name: "health-check",
  failover: true,
  maxRouteChanges: 1,
  async inject(_world, system, holder) {
    const t0 = Date.now();
    holder.setHealthy(false);
    return {
      t0,
      async heal() {
        holder.setHealthy(true);
        await restartIfStopped(system, holder);
      },
    };
  },
};

const gracefulStop: Scenario = {
  name: "graceful-stop",
  failover: true,
  maxRouteChanges: 1,
  async inject(_world, system, holder) {
    const t0 = Date.now();
    system.terminate(holder);
    return {
      t0,
      async heal() {
        await system.stop(holder);
        await system.start(holder);
      },
    };
  },
};

const hostPowerOff: Scenario = {
  name: "host-power-off",
  failover: true,
  maxRouteChanges: 1,
  async inject(world, system, holder) {
    const t0 = await powerOff(world, holder);
    return { t0, heal: () => powerOn(world, system, holder) };
  },
};

const holderPartition: Scenario = {
  name: "holder-partition",
  failover: true,
  maxRouteChanges: 1,
  async inject(world, system, holder) {
    const t0 = Date.now();
    isolate(holder.ns, world.topology.hub.addr);
    holder.partitioned = true;
    return {
      t0,
      holdMs: 3000,
      settleMs: 8000,
      async heal() {
        unisolate(holder.ns);
        holder.partitioned = false;
        await restartIfStopped(system, holder);
      },
    };
  },
};

/**
 * The failover software dies at once, the host and its Consul agent live on: routeleader's agent,
 * every keepalived process (no priority-0 advert: the backups wait out the master-down interval),
 * the `consul lock` process and its child (the session lives until its TTL lapses).
 */
const agentKill: Scenario = {
  name: "agent-kill",
  failover: true,
  maxRouteChanges: 1,
  async inject(_world, system, holder) {
    const t0 = Date.now();
    await system.kill(holder);
    return { t0, heal: () => system.start(holder) };
  },
};

const consulAgentKill: Scenario = {
  name: "consul-agent-kill",
  failover: true,
  maxRouteChanges: 1,
  routeleaderOnly: true,
  async inject(_world, system, holder) {
    const t0 = Date.now();
    await holder.consul?.process.kill();
    return {
      t0,
      // A restarted Consul agent's node may still be declared failed and its sessions invalidated.
      settleMs: 8000,
      async heal() {
        await holder.consul?.restart();
        await restartIfStopped(system, holder);
      },
    };
  },
};

const instanceTerminated: Scenario = {
  name: "instance-terminated",
  failover: true,
  maxRouteChanges: 1,
  routeleaderOnly: true,
  async inject(world, system, holder) {
    await world.terminateInstance(holder);
    const t0 = await powerOff(world, holder);
    return {
      t0,
      async heal() {
        await system.stop(holder);
        await world.replaceInstance(holder);
        await powerOn(world, system, holder);
      },
    };
  },
};

/** Consul's key of the lane's route: the session holding it, read with ?consistent from a live server. */
async function routeSession(system: FailoverSystem): Promise<string | undefined> {
  const server = system.lane.cluster.liveServer();
  const entries = await server.get<{ Session?: string }[] | undefined>(`/v1/kv/routeleader/${system.lane.name}/routes/default?consistent`).catch(() => undefined);
  return entries?.[0]?.Session;
}

/** The peer heartbeat port of the routeleader agent (peers.port default). */
const PEER_PORT = "9732";

/**
 * One follower loses every peer heartbeat (UDP to and from the peer port dropped in its
 * namespace) but still reaches Consul: it finds the holder silent, yet it is 1 of 3 members and
 * must not destroy the healthy holder's session (issue #16). The session must be the same after.
 */
const peerLonePartition: Scenario = {
  name: "peer-lone-partition",
  failover: false,
  maxRouteChanges: 0,
  routeleaderOnly: true,
  async inject(_world, system, holder) {
    const lone = system.lane.hosts.find((h) => h !== holder) as Host;
    const session = await routeSession(system);
    if (!session) throw new Error("peer-lone-partition: the route's key has no session before the fault");
    // A peer never heard is never judged silent: the lone peer must have heard the holder first.
    const logOf = (system as { logOf?: (h: Host) => string }).logOf;
    if (logOf) await waitUntil(`${lone.name} hears ${holder.name}`, async () => (logOf.call(system, lone).includes(`peer ${holder.instanceId} heard`) ? true : undefined), { timeoutMs: 20_000, intervalMs: 100 });
    // …and lists every member: with two of three listed its quorum is 2 of 2, not the 2 of 3 this scenario is about.
    const everyone = `peer members: ${system.lane.hosts.length}`;
    if (logOf) await waitUntil(`${lone.name} lists ${system.lane.hosts.length} members`, async () => (logOf.call(system, lone).includes(everyone) ? true : undefined), { timeoutMs: 20_000, intervalMs: 100 });
    const t0 = Date.now();
    for (const chain of ["INPUT", "OUTPUT"]) nsRun(lone.ns, ["iptables", "-A", chain, "-p", "udp", "--dport", PEER_PORT, "-j", "DROP"]);
    return {
      t0,
      holdMs: 6000,
      async heal() {
        const after = await routeSession(system);
        unisolate(lone.ns);
        if (after !== session) throw new Error(`peer-lone-partition: the healthy holder's session changed (${session} → ${after ?? "none"}) while only ${lone.name} was cut off from its peers`);
        // The lone peer did judge the holder silent, and stood down for want of a majority.
        const log = logOf?.call(system, lone) ?? "";
        if (!/only 1 of 3 members agree/.test(log)) throw new Error(`peer-lone-partition: ${lone.name} never logged its minority verdict:\n${log.split("\n").slice(-15).join("\n")}`);
      },
    };
  },
};

/**
 * A follower's agent restarts, and the holder is powered off as soon as that follower is ready
 * (its session created), before it could hear the holder's heartbeat: the restarted follower must
 * still vote with the other one, so the majority evicts the holder without waiting for gossip
 * (issue #16; before, such a holder waited for Consul's gossip, ~6.5 s with the default profile).
 */
const powerOffAfterPeerRestart: Scenario = {
  name: "power-off-after-peer-restart",
  failover: true,
  maxRouteChanges: 1,
  routeleaderOnly: true,
  async inject(world, system, holder) {
    const follower = system.lane.hosts.find((h) => h !== holder) as Host;
    await system.stop(follower);
    await system.start(follower);
    await waitUntil(`${follower.name} ready again`, async () => ((await system.ready(follower)) ? true : undefined), { timeoutMs: 30_000, intervalMs: 20 });
    const t0 = await powerOff(world, holder);
    return { t0, heal: () => powerOn(world, system, holder) };
  },
};

/** The raft leader, cut off from the other servers and every client. */
const consulMinorityPartition: Scenario = {
  name: "consul-minority-partition",
  failover: false,
  maxRouteChanges: 0,
  routeleaderOnly: true,
  async inject(world, system) {
    const cluster = system.lane.cluster;
    const leaderAddr = await cluster.liveServer().get<string>("/v1/status/leader");
    const leader = cluster.nodes.find((s) => leaderAddr.startsWith(`${s.addr}:`)) ?? cluster.nodes[0]!;
    const t0 = Date.now();
    isolate(leader.ns, world.topology.hub.addr);
    cluster.isolated.add(leader.role);
    return {
      t0,
      holdMs: 8000,
      async heal() {
        unisolate(leader.ns);
        cluster.isolated.delete(leader.role);
        await waitForLeader(cluster);
      },
    };
  },
};

async function waitForLeader(cluster: ConsulGroup): Promise<void> {
  await waitUntil("a Consul leader on every server", async () => {
    for (const s of cluster.servers) if (!(await s.get<string>("/v1/status/leader"))) return undefined;
    return true;
  }, { timeoutMs: 60_000, intervalMs: 200 });
}

/** Two of three servers stopped: no leader, no writes; routes must stay as they are. */
const consulQuorumLoss: Scenario = {
  name: "consul-quorum-loss",
  failover: false,
  maxRouteChanges: 0,
  routeleaderOnly: true,
  noWritesDuringFault: true,
  async inject(_world, system) {
    const cluster = system.lane.cluster;
    const victims = cluster.servers.slice(1);
    const t0 = Date.now();
    await Promise.all(victims.map((s) => s.process.kill()));
    return {
      t0,
      holdMs: 10_000,
      async heal() {
        await Promise.all(victims.map((s) => s.restart()));
        await waitForLeader(cluster);
      },
    };
  },
};

/** A health-check failover while EC2 answers the first ReplaceRoute calls with throttling / 5xx. */
function withEc2Faults(name: string, arm: (world: World) => void): Scenario {
  return {
    name,
    failover: true,
    maxRouteChanges: 1,
    routeleaderOnly: true,
    exclusive: true,
    async inject(world, system, holder) {
      arm(world);
      const fault = await healthCheck.inject(world, system, holder);
      return {
        ...fault,
        async heal() {
          world.proxy.clearFaults();
          await fault.heal();
        },
      };
    },
  };
}

const ec2Throttle = withEc2Faults("ec2-throttle", (w) => w.proxy.throttle("ReplaceRoute", 3));
const ec2Errors = withEc2Faults("ec2-5xx", (w) => w.proxy.serverErrors(3, { action: "ReplaceRoute", status: 500 }));

export const SCENARIOS: Scenario[] = [
  healthCheck,
  gracefulStop,
  hostPowerOff,
  holderPartition,
  agentKill,
  consulAgentKill,
  consulMinorityPartition,
  consulQuorumLoss,
  ec2Throttle,
  ec2Errors,
  instanceTerminated,
  peerLonePartition,
  powerOffAfterPeerRestart,
];

export function scenario(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new Error(`unknown scenario ${name} (known: ${SCENARIOS.map((x) => x.name).join(", ")})`);
  return s;
}

