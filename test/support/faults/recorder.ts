import { DescribeRouteTablesCommand } from "@aws-sdk/client-ec2";
import type { AgentStatus, SimCluster } from "../cluster.js";
import { heldButNotServed, interleavedWriters, reportedHoldsDisagree, type ConsulHoldersSample, type ObservedHold, type ReportedHoldsSample, type RouteSample, type Violation } from "./invariants.js";
import { SampleLoop } from "./sample-loop.js";

/**
 * Records what a user sees of a SimCluster, every `intervalMs`: each route's Consul holder,
 * where its table points (one DescribeRouteTables to moto for all tables), and every running
 * agent's /status. `violations()` checks the liveness invariants over the record.
 */

export interface RecordedRoute {
  /** Table name (as in the ClusterSpec) and destination of the route. */
  table: string;
  destination: string;
}

export interface InvariantBounds {
  /** A key held longer than this must be served by its holder (or released). */
  failoverBoundMs: number;
  /** How long an agent's /status may disagree with Consul. Default 2000. */
  holdsToleranceMs?: number;
  /** See interleavedWriters; default: failoverBoundMs. */
  writeWindowMs?: number;
}

export class InvariantRecorder {
  readonly routeSamples: RouteSample[] = [];
  readonly consulSamples: ConsulHoldersSample[] = [];
  readonly reports: ReportedHoldsSample[] = [];
  private readonly startedAt = Date.now();

  private readonly loop: SampleLoop;

  constructor(
    private readonly sim: SimCluster,
    private readonly routes: Record<string, RecordedRoute>,
    private readonly intervalMs = 250,
  ) {
    this.loop = new SampleLoop(() => this.sample(), intervalMs);
  }

  start(): this {
    this.loop.start();
    return this;
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** One observation of everything. */
  async sample(): Promise<void> {
    const t = Date.now();
    // Each answer carries its own request and answer times: under load they arrive seconds apart.
    const [[holders, consulAt], targets, statuses] = await Promise.all([this.sim.holders().then((h) => [h, Date.now()] as const), this.targets(), this.statuses()]);
    const byInstance = new Map(this.sim.nodes.map((n) => [n.instanceId, n]));
    const consul: Record<string, string | undefined> = {};
    for (const route of Object.keys(this.routes)) {
      const h = holders.get(route);
      consul[route] = h?.instanceId;
      const holderNode = h?.instanceId ? byInstance.get(h.instanceId) : undefined;
      const holderStatus = holderNode ? statuses.get(holderNode.name)?.status : undefined;
      this.routeSamples.push({
        t,
        route,
        ...(h?.instanceId ? { holder: h.instanceId, ...(h.session ? { session: h.session } : {}), lockIndex: h.lockIndex } : {}),
        ...(targets.has(route) ? { target: targets.get(route) as string } : {}),
        ...(holderNode ? { holderTargets: [holderNode.instanceId, holderNode.identity.eniId] } : {}),
        holderReleasing: holderStatus?.routes.find((r) => r.route === route)?.phase === "releasing",
      });
    }
    this.consulSamples.push({ sent: t, t: consulAt, holders: consul });
    for (const node of this.sim.nodes) {
      if (!node.httpUrl) continue;
      const s = statuses.get(node.name)?.status;
      const mine = s?.routes.filter((r) => Object.hasOwn(this.routes, r.route));
      // "releasing" is a key the node still holds by its own account (it gives it up once Consul confirms).
      const answer = statuses.get(node.name);
      this.reports.push({ sent: answer?.sent ?? t, t: answer?.at ?? t, node: node.instanceId, holds: mine?.filter((r) => (r.phase === "holding" || r.phase === "releasing") && !r.unconfirmed).map((r) => r.route), unconfirmed: mine?.filter((r) => r.unconfirmed).map((r) => r.route) ?? [], ...(mine ? { phases: Object.fromEntries(mine.map((r) => [r.route, r.phase])) } : {}) });
    }
  }

  private async targets(): Promise<Map<string, string>> {
    const ids = [...new Set(Object.values(this.routes).map((r) => this.sim.tableIds.get(r.table) as string))];
    const res = await this.sim.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: ids }));
    const out = new Map<string, string>();
    for (const [route, { table, destination }] of Object.entries(this.routes)) {
      const rt = res.RouteTables?.find((x) => x.RouteTableId === this.sim.tableIds.get(table));
      const r = rt?.Routes?.find((x) => x.DestinationCidrBlock === destination || x.DestinationIpv6CidrBlock === destination);
      const target = r?.InstanceId ?? r?.NetworkInterfaceId ?? r?.GatewayId;
      if (target) out.set(route, target);
    }
    return out;
  }

  private async statuses(): Promise<Map<string, { status: AgentStatus; sent: number; at: number }>> {
    const out = new Map<string, { status: AgentStatus; sent: number; at: number }>();
    await Promise.all(
      this.sim.nodes.map(async (n) => {
        if (!n.httpUrl || !n.process || n.process.hasExited) return;
        const asked = Date.now();
        const s = await n.status(1000).catch(() => undefined);
        if (s) out.set(n.name, { status: s, sent: asked, at: Date.now() });
      }),
    );
    return out;
  }

  /** Every invariant over the record (and the proxy's write log since the recorder started). */
  violations(bounds: InvariantBounds): Violation[] {
    const writes = this.sim.proxy ? this.sim.proxy.calls({ mutating: true }).filter((c) => c.time >= this.startedAt) : [];
    return [
      ...heldButNotServed(this.routeSamples, bounds.failoverBoundMs),
      // A pair not observed for longer than the tolerance (the recorder stalled) is not one disagreement.
      ...reportedHoldsDisagree(this.consulSamples, this.reports, bounds.holdsToleranceMs ?? 2000, bounds.holdsToleranceMs ?? 2000),
      ...interleavedWriters(writes, bounds.writeWindowMs ?? bounds.failoverBoundMs, { holds: this.observedHolds(), graceMs: 4 * this.intervalMs }),
    ];
  }

  /** Every observation of a key's holder, named as the proxy log names writes (table id and destination, node name). */
  private observedHolds(): ObservedHold[] {
    const names = new Map(this.sim.nodes.map((n) => [n.instanceId, n.name]));
    return this.routeSamples.flatMap((s) => {
      const route = this.routes[s.route];
      const caller = s.holder ? names.get(s.holder) : undefined;
      return route && caller ? [{ route: `${this.sim.tableIds.get(route.table)} ${route.destination}`, caller, t: s.t }] : [];
    });
  }
}
