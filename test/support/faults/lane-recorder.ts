import { heldButNotServed, interleavedWriters, reportedHoldsDisagree, type ConsulHoldersSample, type ObservedHold, type ReportedHoldsSample, type RouteSample, type Violation } from "./invariants.js";
import { SampleLoop } from "./sample-loop.js";
import type { FailoverSystem } from "./systems.js";
import { DESTINATION, type World } from "./world.js";

/**
 * The liveness invariants of issue #14 over one fault-lab trial: every `intervalMs`, Consul's
 * key for the lane's route, where the lane's table points and each agent's /status (for systems
 * with `observe`); at the end, the checks of ./invariants.ts over the record and the proxy's
 * write log for the lane's table.
 */

const ROUTE = "default";
/** The failover bound of the lab: a key held longer than this must be served or being released. */
export const LAB_FAILOVER_BOUND_MS = 30_000;

export class LaneRecorder {
  readonly routeSamples: RouteSample[] = [];
  readonly consulSamples: ConsulHoldersSample[] = [];
  readonly reports: ReportedHoldsSample[] = [];
  private readonly startedAt = Date.now();

  private readonly loop: SampleLoop;

  constructor(
    private readonly world: World,
    private readonly system: FailoverSystem,
    private readonly intervalMs = 250,
  ) {
    this.loop = new SampleLoop(() => this.sample(), intervalMs);
  }

  /** Only systems that report their holds (routeleader) are recorded. */
  get applies(): boolean {
    return this.system.observe !== undefined;
  }

  start(): this {
    if (!this.applies) return this;
    this.loop.start();
    return this;
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** One observation; a sample whose Consul read fails (no quorum, no server) is left out. */
  async sample(): Promise<void> {
    const t = Date.now();
    const [seen, target] = await Promise.all([(this.system.observe as NonNullable<FailoverSystem["observe"]>)(), this.world.routeTarget(this.system.lane)]);
    const holder = seen.holder;
    const holderHost = this.world.hostByInstance(holder?.instanceId);
    this.routeSamples.push({
      t,
      route: ROUTE,
      ...(holder ? { holder: holder.instanceId, session: holder.session, lockIndex: holder.lockIndex } : {}),
      ...(target ? { target } : {}),
      ...(holderHost ? { holderTargets: [holderHost.instanceId, holderHost.identity.eniId] } : {}),
      holderReleasing: seen.reports.find((r) => r.instanceId === holder?.instanceId)?.releasing ?? false,
    });
    const answered = Date.now();
    this.consulSamples.push({ sent: t, t: answered, holders: { [ROUTE]: holder?.instanceId } });
    // A host cut off from Consul marks its hold unconfirmed in /status: not compared (see reportedHoldsDisagree).
    for (const r of seen.reports) this.reports.push({ sent: t, t: answered, node: r.instanceId, holds: r.holds, unconfirmed: r.unconfirmed });
  }

  /** Every observation of the key's holder, named as the proxy log names writes (table id and destination, host name). */
  private observedHolds(): ObservedHold[] {
    const route = `${this.system.lane.tableId} ${DESTINATION}`;
    return this.routeSamples.flatMap((s) => {
      const caller = this.world.hostByInstance(s.holder)?.name;
      return caller ? [{ route, caller, t: s.t }] : [];
    });
  }

  violations(): Violation[] {
    if (!this.applies) return [];
    const writes = this.world.proxy.calls({ mutating: true }).filter((c) => c.time >= this.startedAt && c.params.RouteTableId === this.system.lane.tableId && c.params.DestinationCidrBlock === DESTINATION);
    return [
      ...heldButNotServed(this.routeSamples, LAB_FAILOVER_BOUND_MS),
      ...reportedHoldsDisagree(this.consulSamples, this.reports, 2000, 2000),
      ...interleavedWriters(writes, this.system.writeWindowMs ?? 3000, { holds: this.observedHolds(), graceMs: 4 * this.intervalMs }),
    ];
  }
}
