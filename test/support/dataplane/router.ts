import { execFileSync } from "node:child_process";
import { DescribeAddressesCommand, DescribeNetworkInterfacesCommand, DescribeRouteTablesCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { CLIENT_TABLE, type Dataplane } from "./vpc.js";

/**
 * The VPC fabric of the simulator: polls moto every `intervalMs` and makes the router namespace
 * follow it with `ip route` and `iptables`:
 * - the client subnet's route table: its default route goes to the target ENI's veth;
 * - every private IP of a NAT's ENI (primary and secondary) is routed to that ENI's veth;
 * - the internet gateway's 1:1 NAT: public IP ↔ private IP per Elastic IP association (read
 *   through the fault proxy, which keeps the private IP an association named; moto does not).
 * Each poll reads the route table first, straight from moto, and applies it before it reads the
 * ENIs and addresses: the route's lag waits on one moto request, not four (the proxy reads the
 * instances for every DescribeRouteTables), which matters when moto is starved for CPU.
 * Every applied change is recorded with the time it was applied, so the router's own lag
 * (EC2 write → data plane changed) is measured and reported, never subtracted.
 */

export interface RouterChange {
  /** When the change was applied. */
  t: number;
  /** When the poll that saw it sent its Describe calls. */
  polledAt: number;
  kind: "route" | "hosts" | "igw";
  detail: string;
}

/** What the ENIs and addresses say: the host routes, the gateway's NAT, and where each ENI is. */
interface Fabric {
  hosts: string;
  igw: string;
  hostRoutes: Map<string, string[]>;
  igwRules: [string, string][];
  primaryOf: Map<string, string>;
  instanceEni: Map<string, string>;
}

export class VpcRouter {
  readonly changes: RouterChange[] = [];
  /** Every poll's start and end (Describe calls sent → changes applied). */
  readonly polls: { start: number; end: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The route and the fabric as last applied (hosts "" when a host route could not be). */
  private route: string | undefined;
  private fabric: Fabric | undefined;
  /** The last fabric read, for the route's target: which ENI an instance has, and its primary IP. */
  private known: Fabric | undefined;
  private running: Promise<void> | undefined;
  /** The kernel dropped routes behind our back (a link went down): the next poll applies everything, then these resolve. */
  private resyncWanted: (() => void)[] | undefined;
  /** moto hands out public IPs in 127.0.0.0/8, which cannot be routed: each gets a 203.0.113.x stand-in. */
  private readonly publicStandIn = new Map<string, string>();
  lastError: string | undefined;

  constructor(
    private readonly dp: Dataplane,
    private readonly ec2: EC2Client,
    private readonly tableId: string,
    private readonly destination = "0.0.0.0/0",
    private readonly intervalMs = 100,
    /** Where the route table is read (default: `ec2`). */
    private readonly routeEc2: EC2Client = ec2,
  ) {}

  start(): void {
    const tick = () => {
      this.running = this.poll()
        .catch((err: Error) => {
          this.lastError = err.message;
        })
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * A link of the router came back up: the kernel removed every route through it when it went
   * down (the NAT's host routes, the client's default route), so the next poll re-applies all.
   * Resolves once it has.
   */
  resync(): Promise<void> {
    return new Promise((resolve) => (this.resyncWanted ??= []).push(resolve));
  }

  /** Resolves once a poll has applied everything it read (every NAT's host routes among it). */
  async applied(): Promise<void> {
    await this.resync();
  }

  /** The change that applied the route to `eniId`'s NAT, first at or after `since`. */
  routeApplied(eniId: string, since: number): RouterChange | undefined {
    const nat = this.dp.natByEni(eniId);
    return this.changes.find((c) => c.kind === "route" && c.t >= since && nat && c.detail.includes(nat.routerVeth));
  }

  /** Durations of the polls that ended in [from, to] (ms). */
  pollDurations(from: number, to: number): number[] {
    return this.polls.filter((p) => p.end >= from && p.end <= to).map((p) => p.end - p.start);
  }

  private async readRoute(known: Fabric): Promise<string[]> {
    const tables = await this.routeEc2.send(new DescribeRouteTablesCommand({ RouteTableIds: [this.tableId] }));
    const route = tables.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === this.destination);
    const eni = route?.NetworkInterfaceId ?? (route?.InstanceId ? known.instanceEni.get(route.InstanceId) : undefined);
    const nat = this.dp.natByEni(eni);
    const via = nat ? known.primaryOf.get(nat.eniId) : undefined;
    return nat && via && route?.State !== "blackhole" ? ["default", "via", via, "dev", nat.routerVeth, "onlink"] : ["blackhole", "default"];
  }

  private async readFabric(): Promise<Fabric> {
    const enis = this.dp.nats.map((n) => n.eniId);
    const [interfaces, addresses] = await Promise.all([
      this.ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: enis })),
      this.ec2.send(new DescribeAddressesCommand({})),
    ]);
    const primaryOf = new Map<string, string>();
    const instanceEni = new Map<string, string>();
    const hostRoutes = new Map<string, string[]>();
    const igw = new Map<string, string>();
    for (const eni of interfaces.NetworkInterfaces ?? []) {
      const nat = this.dp.natByEni(eni.NetworkInterfaceId);
      if (!nat) continue;
      const primary = eni.PrivateIpAddress as string;
      primaryOf.set(nat.eniId, primary);
      if (eni.Attachment?.InstanceId) instanceEni.set(eni.Attachment.InstanceId, nat.eniId);
      for (const a of eni.PrivateIpAddresses ?? []) {
        const ipAddr = a.PrivateIpAddress as string;
        hostRoutes.set(ipAddr, a.Primary ? [`${ipAddr}/32`, "dev", nat.routerVeth] : [`${ipAddr}/32`, "via", primary, "dev", nat.routerVeth, "onlink"]);
      }
    }
    for (const a of addresses.Addresses ?? []) if (a.PrivateIpAddress && a.PublicIp && hostRoutes.has(a.PrivateIpAddress)) igw.set(a.PrivateIpAddress, a.PublicIp);
    const igwRules = [...igw.entries()].map(([priv, pub]): [string, string] => [priv, this.standIn(pub)]).sort();
    return {
      hosts: [...hostRoutes.values()].map((r) => r.join(" ")).sort().join(","),
      igw: igwRules.map(([p, q]) => `${p}=${q}`).join(","),
      hostRoutes,
      igwRules,
      primaryOf,
      instanceEni,
    };
  }

  /** The simulator's address for a public IP moto handed out. */
  standIn(publicIp: string): string {
    let addr = this.publicStandIn.get(publicIp);
    if (!addr) {
      addr = `203.0.113.${10 + this.publicStandIn.size}`;
      this.publicStandIn.set(publicIp, addr);
    }
    return addr;
  }

  /** One change; a route through a link that is down (a powered-off NAT) fails alone and is retried next poll. */
  private ip(args: string[]): boolean {
    try {
      execFileSync("ip", ["-n", this.dp.router, ...args], { stdio: ["ignore", "ignore", "pipe"] });
      return true;
    } catch (err) {
      this.lastError = `ip ${args.join(" ")}: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? (err as Error).message}`;
      return false;
    }
  }

  private async poll(): Promise<void> {
    const start = Date.now();
    const waiting = this.resyncWanted;
    this.resyncWanted = undefined;
    let complete = false;
    try {
      this.known ??= await this.readFabric();
      const routeAt = Date.now();
      const routeCmd = await this.readRoute(this.known);
      const route = routeCmd.join(" ");
      if (waiting || this.route !== route) {
        this.ip(["route", "replace", ...routeCmd, "table", CLIENT_TABLE]);
        this.changes.push({ t: Date.now(), polledAt: routeAt, kind: "route", detail: route });
        this.route = route;
      }
      const fabricAt = Date.now();
      this.known = await this.readFabric();
      complete = this.applyFabric(fabricAt, this.known, waiting ? undefined : this.fabric);
    } finally {
      this.polls.push({ start, end: Date.now() });
      if (waiting && !complete) this.resyncWanted = [...waiting, ...(this.resyncWanted ?? [])];
      else for (const resolve of waiting ?? []) resolve();
    }
  }

  /** Applies the host routes and the gateway's NAT where they changed; false if a host route could not be. */
  private applyFabric(polledAt: number, want: Fabric, have: Fabric | undefined): boolean {
    let hostsDone = true;
    if (!have || have.hosts !== want.hosts) {
      for (const cmd of want.hostRoutes.values()) hostsDone = this.ip(["route", "replace", ...cmd]) && hostsDone;
      for (const addr of have?.hostRoutes.keys() ?? []) if (!want.hostRoutes.has(addr)) this.ip(["route", "del", `${addr}/32`]);
      this.changes.push({ t: Date.now(), polledAt, kind: "hosts", detail: want.hosts });
    }
    if (!have || have.igw !== want.igw) {
      const rules = ["*nat", ":IGW_IN - [0:0]", ":IGW_OUT - [0:0]"];
      for (const [priv, pub] of want.igwRules) rules.push(`-A IGW_IN -d ${pub}/32 -j DNAT --to-destination ${priv}`, `-A IGW_OUT -s ${priv}/32 -j SNAT --to-source ${pub}`);
      rules.push("COMMIT", "");
      execFileSync("ip", ["netns", "exec", this.dp.router, "iptables-restore", "--noflush"], { input: rules.join("\n"), stdio: ["pipe", "ignore", "pipe"] });
      // The gateway's NAT is stateless on AWS: forget mappings made under the old associations.
      execFileSync("ip", ["netns", "exec", this.dp.router, "conntrack", "-F"], { stdio: ["ignore", "ignore", "ignore"] });
      this.changes.push({ t: Date.now(), polledAt, kind: "igw", detail: want.igw });
    }
    this.fabric = hostsDone ? want : { ...want, hosts: "" };
    return hostsDone;
  }
}
