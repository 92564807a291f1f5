import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

/**
 * Hosts as Linux network namespaces: every host, Consul server and the hub get their own
 * namespace; a bridge in the hub namespace connects them through veth pairs created directly
 * inside the namespaces (nothing is added to the root namespace). Addresses come from
 * 198.18.0.0/15 (RFC 2544 benchmarking) and exist only inside the namespaces.
 *
 * Deleting a namespace removes its veths, but a process still running in it keeps it alive
 * unseen, so teardown kills every pid in each namespace first (all of them were started here).
 */

export interface NetnsNode {
  /** Short role name: "hub", "s1", "h2". */
  role: string;
  /** Namespace name (rl-<random>-<role>). */
  ns: string;
  addr: string;
  /** The veth end inside the hub namespace (attached to the bridge); undefined for the hub. */
  hubVeth?: string;
}

export interface Topology {
  prefix: string;
  hub: NetnsNode;
  servers: NetnsNode[];
  hosts: NetnsNode[];
  /** Every namespace created, in creation order. */
  readonly created: string[];
}

export interface TopologySpec {
  hosts: number;
  /** Consul server namespaces (default 3). */
  servers?: number;
  /** Run the 3 Consul servers in the first three host namespaces instead of their own. */
  serversOnHosts?: boolean;
}

const SUBNET = "198.18.0";
const HUB_ADDR = `${SUBNET}.1`;

function ip(args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** `ip netns exec <ns> <command...>` as an argv prefix. */
export function nsWrap(ns: string): string[] {
  return ["ip", "netns", "exec", ns];
}

/** Runs a command inside a namespace and returns its stdout. */
export function nsRun(ns: string, command: string[]): string {
  return execFileSync("ip", ["netns", "exec", ns, ...command], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Pids of every process in a namespace. */
export function nsPids(ns: string): number[] {
  try {
    return ip(["netns", "pids", ns])
      .split("\n")
      .map((l) => Number(l.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Fails with a clear message when this process may not create namespaces. */
export function assertNetnsAllowed(): void {
  const probe = `rl-${randomBytes(3).toString("hex")}-probe`;
  try {
    ip(["netns", "add", probe]);
  } catch (err) {
    throw new Error(`network namespaces are not available here ('ip netns add' refused: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}); the fault suite needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN`);
  }
  ip(["netns", "del", probe]);
}

const live = new Set<Topology>();

function destroySync(t: Topology): void {
  for (const ns of [...t.created].reverse()) {
    const pids = nsPids(ns);
    signalAll(pids, "SIGCONT");
    signalAll(pids, "SIGKILL");
  }
  for (const ns of [...t.created].reverse()) {
    for (let attempt = 0; attempt < 20; attempt++) {
      if (nsPids(ns).length === 0) break;
      execFileSync("sleep", ["0.1"]);
    }
    try {
      ip(["netns", "del", ns]);
    } catch {
      // already removed
    }
  }
  t.created.length = 0;
  live.delete(t);
}

let handlersInstalled = false;
function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.once("exit", () => {
    for (const t of [...live]) destroySync(t);
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      for (const t of [...live]) destroySync(t);
      process.exit(130);
    });
  }
}

function addNamespace(t: Topology, role: string): string {
  const ns = `${t.prefix}-${role}`;
  ip(["netns", "add", ns]);
  t.created.push(ns);
  ip(["-n", ns, "link", "set", "lo", "up"]);
  return ns;
}

function attach(t: Topology, role: string, addr: string): NetnsNode {
  const ns = addNamespace(t, role);
  // The veth is created inside the hub with its peer placed straight into the new namespace.
  const hubVeth = `v${role}`.slice(0, 15);
  ip(["-n", t.hub.ns, "link", "add", hubVeth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  ip(["-n", t.hub.ns, "link", "set", hubVeth, "master", "br0", "up"]);
  ip(["-n", ns, "addr", "add", `${addr}/24`, "dev", "eth0"]);
  ip(["-n", ns, "link", "set", "eth0", "up"]);
  return { role, ns, addr, hubVeth };
}

/** Creates the hub, the Consul server namespaces and `hosts` host namespaces. */
export function createTopology(spec: TopologySpec): Topology {
  installSignalHandlers();
  const prefix = `rl-${randomBytes(3).toString("hex")}`;
  const t: Topology = { prefix, hub: { role: "hub", ns: `${prefix}-hub`, addr: HUB_ADDR }, servers: [], hosts: [], created: [] };
  live.add(t);
  try {
    addNamespace(t, "hub");
    ip(["-n", t.hub.ns, "link", "add", "br0", "type", "bridge"]);
    ip(["-n", t.hub.ns, "addr", "add", `${HUB_ADDR}/24`, "dev", "br0"]);
    ip(["-n", t.hub.ns, "link", "set", "br0", "up"]);
    for (let i = 1; i <= spec.hosts; i++) t.hosts.push(attach(t, `h${i}`, `${SUBNET}.${30 + i}`));
    const servers = spec.servers ?? 3;
    if (spec.serversOnHosts) {
      if (spec.hosts < servers) throw new Error(`serversOnHosts needs at least ${servers} hosts`);
      t.servers = t.hosts.slice(0, servers).map((h, i) => ({ ...h, role: `s${i + 1}` }));
    } else {
      for (let i = 1; i <= servers; i++) t.servers.push(attach(t, `s${i}`, `${SUBNET}.${10 + i}`));
    }
    return t;
  } catch (err) {
    destroySync(t);
    throw err;
  }
}

/** Kills every process left in the topology's namespaces and deletes them (and their veths). */
export function destroyTopology(t: Topology): void {
  destroySync(t);
}

/** Namespaces whose name starts with the prefix (used by tests to prove teardown). */
export function namespacesWithPrefix(prefix: string): string[] {
  return ip(["netns", "list"])
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(prefix));
}
