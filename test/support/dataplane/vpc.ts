import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { nsPids } from "../netns.js";
import { ManagedProcess, waitUntil } from "../process.js";

/**
 * A VPC data plane in network namespaces: a private-subnet client, one namespace per NAT
 * instance (its primary ENI as eth1, forwarding on, the bootstrap's MASQUERADE rule or a SNAT
 * to a secondary IP), an "internet" host with UDP and TCP echo servers, and a router namespace
 * standing for the VPC fabric and the internet gateway. Each ENI has its own veth to the
 * router, so where a private IP lives is decided by the router's routes (which `VpcRouter`
 * keeps equal to moto), not by ARP. Nothing is added to the root namespace.
 */

export const VPC_CIDR = "10.0.0.0/16";
export const ROUTER_ADDR = "10.0.0.1";
export const INTERNET_ADDR = "192.0.2.2";
const INTERNET_ROUTER = "192.0.2.1";
/** Table of the router that stands for the private subnet's route table. */
export const CLIENT_TABLE = "100";
const REPO = join(import.meta.dirname, "..", "..", "..");

export interface NatSpec {
  name: string;
  eniId: string;
  privateIp: string;
  /** SNAT to this (secondary) private IP instead of MASQUERADE to the primary. */
  snatTo?: string;
}

export interface DataplaneSpec {
  /** The private subnet's client: its CIDR (a /24) and address. */
  client: { cidr: string; addr: string };
  nats: NatSpec[];
  /**
   * A dedicated link between the first two NATs (169.254.77.1 and .2), for conntrackd or VRRP:
   * each NAT's `sync` veth on a bridge in the router namespace, so a powered-off NAT does not
   * take its peer's link down (the peer's ENI stays up on AWS).
   */
  syncLink?: boolean;
  /** Strict TCP tracking on the NATs (nf_conntrack_tcp_loose=0), as conntrackd setups use. */
  strictTcp?: boolean;
}

export interface NatNs extends NatSpec {
  ns: string;
  /** The ENI's veth end in the router namespace. */
  routerVeth: string;
  syncAddr?: string;
  /** The sync veth's end on the router namespace's bridge. */
  syncVeth?: string;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export function inNs(ns: string, args: string[]): string {
  return run("ip", ["netns", "exec", ns, ...args]);
}

export class Dataplane {
  readonly created: string[] = [];
  readonly nats: NatNs[] = [];
  readonly procs: ManagedProcess[] = [];
  readonly client: string;
  readonly router: string;
  readonly internet: string;

  private constructor(
    readonly prefix: string,
    readonly spec: DataplaneSpec,
  ) {
    this.client = `${prefix}-client`;
    this.router = `${prefix}-router`;
    this.internet = `${prefix}-inet`;
  }

  static create(spec: DataplaneSpec): Dataplane {
    const dp = new Dataplane(`dp-${randomBytes(3).toString("hex")}`, spec);
    try {
      dp.build();
      return dp;
    } catch (err) {
      dp.destroy();
      throw err;
    }
  }

  private addNs(ns: string): void {
    run("ip", ["netns", "add", ns]);
    this.created.push(ns);
    run("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }

  private link(a: string, aDev: string, b: string, bDev: string): void {
    run("ip", ["-n", a, "link", "add", aDev, "type", "veth", "peer", "name", bDev, "netns", b]);
    run("ip", ["-n", a, "link", "set", aDev, "up"]);
    run("ip", ["-n", b, "link", "set", bDev, "up"]);
  }

  private build(): void {
    const { client, nats } = this.spec;
    for (const ns of [this.router, this.client, this.internet]) this.addNs(ns);
    const sysctl = (ns: string, kv: string) => inNs(ns, ["sysctl", "-qw", kv]);
    sysctl(this.router, "net.ipv4.ip_forward=1");
    sysctl(this.router, "net.ipv4.conf.all.rp_filter=0");
    sysctl(this.router, "net.ipv4.conf.default.rp_filter=0");
    // Client subnet.
    const gw = client.cidr.replace(/\.0\/24$/, ".1");
    this.link(this.router, "pc", this.client, "eth0");
    run("ip", ["-n", this.router, "addr", "add", `${gw}/24`, "dev", "pc"]);
    run("ip", ["-n", this.client, "addr", "add", `${client.addr}/24`, "dev", "eth0"]);
    run("ip", ["-n", this.client, "route", "add", "default", "via", gw]);
    // The client subnet's route table: nothing until VpcRouter reads moto.
    run("ip", ["-n", this.router, "rule", "add", "iif", "pc", "lookup", CLIENT_TABLE, "priority", "100"]);
    run("ip", ["-n", this.router, "route", "add", "blackhole", "default", "table", CLIENT_TABLE]);
    // The internet: it never sees (or answers) a private source address.
    this.link(this.router, "pi", this.internet, "eth0");
    run("ip", ["-n", this.router, "addr", "add", `${INTERNET_ROUTER}/24`, "dev", "pi"]);
    run("ip", ["-n", this.internet, "addr", "add", `${INTERNET_ADDR}/24`, "dev", "eth0"]);
    run("ip", ["-n", this.internet, "route", "add", "default", "via", INTERNET_ROUTER]);
    inNs(this.internet, ["iptables", "-A", "INPUT", "-s", "10.0.0.0/8", "-j", "DROP"]);
    // The internet gateway's 1:1 NAT chains, filled by VpcRouter.
    inNs(this.router, ["iptables", "-t", "nat", "-N", "IGW_IN"]);
    inNs(this.router, ["iptables", "-t", "nat", "-N", "IGW_OUT"]);
    inNs(this.router, ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", "pi", "-j", "IGW_IN"]);
    inNs(this.router, ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "pi", "-j", "IGW_OUT"]);
    for (const [i, nat] of nats.entries()) {
      const ns = `${this.prefix}-${nat.name}`;
      this.addNs(ns);
      const routerVeth = `n-${nat.name}`.slice(0, 15);
      this.link(this.router, routerVeth, ns, "eth1");
      run("ip", ["-n", this.router, "addr", "add", `${ROUTER_ADDR}/32`, "dev", routerVeth]);
      run("ip", ["-n", ns, "addr", "add", `${nat.privateIp}/24`, "dev", "eth1"]);
      run("ip", ["-n", ns, "route", "add", "default", "via", ROUTER_ADDR, "dev", "eth1"]);
      // As scripts/bootstrap.sh configures a NAT instance.
      sysctl(ns, "net.ipv4.ip_forward=1");
      const out = nat.snatTo ? ["-j", "SNAT", "--to-source", nat.snatTo] : ["-j", "MASQUERADE"];
      inNs(ns, ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", VPC_CIDR, "!", "-d", VPC_CIDR, ...out]);
      if (this.spec.strictTcp) sysctl(ns, "net.netfilter.nf_conntrack_tcp_loose=0");
      this.nats.push({ ...nat, ns, routerVeth, ...(this.spec.syncLink && i < 2 ? { syncAddr: `169.254.77.${i + 1}`, syncVeth: `s-${nat.name}`.slice(0, 15) } : {}) });
    }
    if (this.spec.syncLink) {
      run("ip", ["-n", this.router, "link", "add", "syncbr", "type", "bridge"]);
      run("ip", ["-n", this.router, "link", "set", "syncbr", "up"]);
      for (const nat of this.nats.slice(0, 2)) {
        this.link(nat.ns, "sync", this.router, nat.syncVeth as string);
        run("ip", ["-n", this.router, "link", "set", nat.syncVeth as string, "master", "syncbr"]);
        run("ip", ["-n", nat.ns, "addr", "add", `${nat.syncAddr}/30`, "dev", "sync"]);
      }
    }
  }

  nat(name: string): NatNs {
    const n = this.nats.find((x) => x.name === name);
    if (!n) throw new Error(`no NAT namespace ${name}`);
    return n;
  }

  natByEni(eniId: string | undefined): NatNs | undefined {
    return this.nats.find((n) => n.eniId === eniId);
  }

  /** Starts traffic.ts in a namespace (server, udp-probe, tcp-streams). */
  async app(ns: string, args: string[], name: string): Promise<ManagedProcess> {
    const proc = new ManagedProcess("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", join(REPO, "test", "support", "dataplane", "traffic.ts"), ...args], { name, cwd: REPO, keepLines: 50 });
    this.procs.push(proc);
    await proc.waitForLine(/"ready":true/, 30_000);
    return proc;
  }

  async startInternet(): Promise<void> {
    await this.app(this.internet, ["server", INTERNET_ADDR], "echo servers");
  }

  /** Forwarding off in a NAT: its data path is broken (what a failing NAT check detects). */
  setForwarding(nat: NatNs, on: boolean): void {
    inNs(nat.ns, ["sysctl", "-qw", `net.ipv4.ip_forward=${on ? 1 : 0}`]);
  }

  /** The NAT's links down and every process in its namespace killed. */
  powerOff(nat: NatNs): void {
    run("ip", ["-n", this.router, "link", "set", nat.routerVeth, "down"]);
    if (nat.syncVeth) run("ip", ["-n", this.router, "link", "set", nat.syncVeth, "down"]);
    for (const pid of nsPids(nat.ns)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }

  powerOn(nat: NatNs): void {
    run("ip", ["-n", this.router, "link", "set", nat.routerVeth, "up"]);
    if (nat.syncVeth) run("ip", ["-n", this.router, "link", "set", nat.syncVeth, "up"]);
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop(3000)));
    this.destroy();
  }

  destroy(): void {
    for (const ns of [...this.created].reverse()) {
      for (const pid of nsPids(ns)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
    }
    for (const ns of [...this.created].reverse()) {
      try {
        run("ip", ["netns", "del", ns]);
      } catch {
        // already removed
      }
    }
    this.created.length = 0;
  }
}

/** Waits until a namespace has no process left (after powerOff). */
export async function waitNoPids(ns: string): Promise<void> {
  await waitUntil(`no process in ${ns}`, async () => (nsPids(ns).length === 0 ? true : undefined), { timeoutMs: 10_000, intervalMs: 50 });
}
