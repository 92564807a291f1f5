import type { EC2Client } from "@aws-sdk/client-ec2";
import { AwsCallError, classifyAwsError } from "../aws/errors.js";
import { GateClosedError, withRetries, type RetryPolicy } from "../aws/retry.js";
import type { Config } from "../config/index.js";
import type { RouteConfig } from "../config/schema.js";
import type { Identity } from "../identity/index.js";
import type { Logger } from "../observe/log.js";
import { ExitError } from "../exit-codes.js";
import { decideClaim, decideRelease, type ClaimDecision } from "./decide.js";
import { associateEip, decideEip, describeEip } from "./eip.js";
import { assignSecondaryIp, decideSecondaryIp, privateIpsOf } from "./secondary-ip.js";
import { describeVpcTables, sendRouteWrite, WRITE_ACTIONS, type RouteTarget, type RouteWrite } from "./ec2-tables.js";
import { assertOneRoutePerEntry, reresolveTables, resolveRouteTables } from "./resolve.js";
import { findRoute, targetText, type OwnTarget, type TableSnapshot } from "./route-state.js";
import { selectorIdCover, selectorSubnets } from "./selector.js";
import type { ConvergeItem } from "../election/index.js";
import { disableSourceDestCheck, proveSourceDestCheckWrite, readSourceDestCheck } from "./source-dest.js";

/** Fencing: consistent lock check + lease deadline; false → do not write. */
export type WriteGate = (routeName: string) => Promise<boolean>;

export type TableAction = "created" | "replaced" | "associated" | "unchanged" | "skipped-gate" | "dry-run" | "failed" | "missing";

export interface ClaimResult {
  routeName: string;
  action: "created" | "replaced" | "associated" | "unchanged" | "skipped-gate" | "dry-run";
  tables: { tableId: string; action: TableAction; previousTarget?: string; reason?: string }[];
  ms: number;
}

export interface RouteObservation {
  routeName: string;
  tableId: string;
  destination: string;
  target?: string;
  state: "active" | "blackhole" | "absent";
}

export interface RouteControllerDeps {
  ec2: EC2Client;
  config: Config;
  identity: Identity;
  log: Logger;
  dryRun: boolean;
  /** Policy of reads (DescribeRouteTables…); default 3 attempts within 10 s. */
  readPolicy?: RetryPolicy;
  /** Point every route at its `fallback` instead of this instance (the fallback writer's controller). */
  toFallback?: boolean;
}

/** `sourceDestCheck: verify` and the check is on: this node must not attract traffic. */
export class SourceDestCheckError extends Error {
  constructor(instanceId: string, routeName: string) {
    super(`source/destination check is on for ${instanceId} (sourceDestCheck: verify): refusing to claim route "${routeName}"; turn it off or set sourceDestCheck: fix`);
    this.name = "SourceDestCheckError";
  }
}

const DEFAULT_READ_POLICY: RetryPolicy = { attempts: 3, deadlineMs: 10_000 };

/** The route-level action from its tables' actions: a refusal or dry run outranks any write. */
export function summarizeClaim(actions: readonly TableAction[]): ClaimResult["action"] {
  if (actions.includes("skipped-gate")) return "skipped-gate";
  if (actions.includes("dry-run")) return "dry-run";
  if (actions.includes("replaced")) return "replaced";
  if (actions.includes("created")) return "created";
  if (actions.includes("associated")) return "associated";
  return "unchanged";
}

function awsCode(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  return classifyAwsError(cause ?? err).code;
}

/**
 * Makes route tables point this instance's routes at itself, for the election code. It
 * decides from one DescribeRouteTables per call, asks the gate right before every write
 * attempt, never writes in dry run, and never touches a table outside this instance's VPC.
 * It does not know who holds a lock: the caller claims only what it holds.
 */
/**
 * Routes converged at once in one reconcile: a failover of many routes must not queue them one
 * write after another, and EC2's mutating-call bucket (50, refill 5/s) absorbs this burst.
 */
const RECONCILE_CONCURRENCY = 8;

/** Runs `task` over `items`, at most `limit` at a time, keeping the order of the results. */
async function mapWithConcurrency<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export class RouteController {
  private readonly routes: Map<string, RouteConfig>;
  private readonly tablesByRoute = new Map<string, string[]>();
  private readonly me: OwnTarget;
  private readonly readPolicy: RetryPolicy;
  private readonly writePolicy: RetryPolicy;
  private sourceDestCheckOn = false;
  /** The configuration in force (a reload replaces it). */
  private config: Config;
  /** Subnets the selectors name, proven to be in this VPC by resolve(). */
  private readonly knownSubnets = new Set<string>();
  /** Live conflicts already logged (table + destination + routes), so each is logged once. */
  private loggedConflicts = new Set<string>();

  constructor(private readonly deps: RouteControllerDeps) {
    this.config = deps.config;
    this.routes = new Map(deps.config.routes.map((r) => [r.name, r]));
    this.me = { instanceId: deps.identity.instanceId, eniId: deps.identity.eniId };
    this.readPolicy = deps.readPolicy ?? DEFAULT_READ_POLICY;
    this.writePolicy = { attempts: deps.config.aws.writeAttempts, deadlineMs: deps.config.aws.writeTimeout };
  }

  /** `resolve()`, then `applySourceDestCheckMode()`. Throws ExitError (EXIT.aws, EXIT.config). */
  async prepare(): Promise<void> {
    await this.resolve();
    await this.applySourceDestCheckMode();
  }

  /**
   * Resolves every route's tables (own VPC only) and refuses two routes on one table and
   * destination. Reads only: safe before Consul is known to work. Throws ExitError
   * (EXIT.aws: refused call, unknown id, other VPC; EXIT.config: two routes on one entry).
   */
  async resolve(): Promise<void> {
    const resolved = await resolveRouteTables(this.deps.ec2, this.deps.config.routes, this.deps.identity.vpcId, this.readPolicy);
    assertOneRoutePerEntry(this.deps.config.routes, resolved);
    for (const route of this.deps.config.routes) for (const subnet of selectorSubnets(route.table)) this.knownSubnets.add(subnet);
    for (const [name, ids] of resolved) {
      this.tablesByRoute.set(name, ids);
      this.deps.log.info({ route: name, tables: ids }, "route tables resolved");
    }
  }

  /**
   * A reload's reads: resolves the new configuration's routes against this VPC as start-up
   * does (unknown ids, other VPCs, selectors matching nothing and two routes on one entry are
   * refused with the same ExitError), without changing what this controller manages.
   */
  async planTables(config: Config): Promise<Map<string, string[]>> {
    const resolved = await resolveRouteTables(this.deps.ec2, config.routes, this.deps.identity.vpcId, this.readPolicy);
    assertOneRoutePerEntry(config.routes, resolved);
    return resolved;
  }

  /**
   * A reload: the new configuration's routes with the tables planTables() resolved. A route
   * the configuration no longer names stays known (its release may delete it, per onRelease)
   * until forget(). The AWS settings are not reloadable and stay as they are.
   */
  applyConfig(config: Config, tables: ReadonlyMap<string, string[]>): void {
    this.config = config;
    for (const route of config.routes) {
      this.routes.set(route.name, route);
      this.tablesByRoute.set(route.name, tables.get(route.name) ?? []);
      for (const subnet of selectorSubnets(route.table)) this.knownSubnets.add(subnet);
    }
  }

  /** Routes removed by a reload and released: no longer managed. */
  forget(names: readonly string[]): void {
    for (const name of names) {
      this.routes.delete(name);
      this.tablesByRoute.delete(name);
    }
  }

  /** The tables `prepare()` resolved for a route. */
  tablesOf(routeName: string): readonly string[] {
    const ids = this.tablesByRoute.get(routeName);
    if (!ids) throw new Error(`route "${routeName}" is not configured or prepare() has not run`);
    return ids;
  }

  async claim(routeName: string, gate: WriteGate, signal?: AbortSignal): Promise<ClaimResult> {
    const started = performance.now();
    const route = this.route(routeName);
    await this.ensureSourceDestCheckOff(routeName);
    const tables = await this.describe(this.tablesOf(routeName), signal);
    const { result, failure } = await this.converge1(route, tables, gate, started, "claim", signal);
    if (failure) throw failure;
    return result;
  }

  /**
   * One DescribeRouteTables for every table of the held routes; repairs what drifted. A
   * failed write (throttled past its deadline, 5xx, refused) does not stop the other repairs;
   * the first such error is thrown at the end.
   */
  async reconcile(heldRoutes: readonly string[], gate: WriteGate): Promise<ClaimResult[]> {
    const outcomes = await this.converge(heldRoutes.map((name) => ({ name, force: false })), gate);
    const firstFailure = outcomes.find((o) => !o.ok);
    if (firstFailure && !firstFailure.ok) throw firstFailure.error;
    return outcomes.map((o) => (o.ok ? o.result : (undefined as never)));
  }

  /**
   * The election's write: one DescribeRouteTables for every table of the routes, then each
   * route brought to this instance (at most RECONCILE_CONCURRENCY at once). `force` writes a
   * route even where the describe shows it ours already: a new holder's re-assert must not
   * trust an eventually consistent read. A batch of takeovers only (`takeoverFrom`: another
   * instance held the route) is written without that describe: the route points at the old
   * holder, and the read would add its round trip to every failover; the re-asserts read.
   * Every route gets its own outcome, reported through `onDone` as soon as that route is
   * finished; nothing is thrown.
   */
  async converge(items: readonly ConvergeItem[], gate: WriteGate, onDone?: (name: string, outcome: RouteWriteOutcome) => void): Promise<RouteWriteOutcome[]> {
    if (items.length === 0) return [];
    const started = performance.now();
    const finish = (name: string, outcome: RouteWriteOutcome) => {
      onDone?.(name, outcome);
      return outcome;
    };
    let tables: Map<string, TableSnapshot> | undefined;
    if (!items.every((i) => this.writesBeforeReading(i))) {
      try {
        tables = await this.describe(this.coveringIds());
        this.refreshTables([...tables.values()]);
      } catch (err) {
        return items.map((i) => finish(i.name, failed(err)));
      }
    }
    return mapWithConcurrency(items, RECONCILE_CONCURRENCY, async (item) => {
      try {
        await this.ensureSourceDestCheckOff(item.name);
        const read = tables ?? { takeoverFrom: item.takeoverFrom as string };
        const { result, failure } = await this.converge1(this.route(item.name), read, gate, started, "reconcile", undefined, item.force);
        return finish(item.name, failure ? failed(failure) : { ok: true, result });
      } catch (err) {
        return finish(item.name, failed(err));
      }
    });
  }

  async release(routeName: string, gate: WriteGate): Promise<void> {
    const route = this.route(routeName);
    if (route.onRelease === "keep") {
      this.deps.log.info({ route: routeName, reason: "onRelease: keep" }, "route kept on release");
      return;
    }
    const tables = await this.describe(this.tablesOf(routeName));
    for (const tableId of this.tablesOf(routeName)) {
      const started = performance.now();
      const table = tables.get(tableId);
      const current = table ? findRoute(table, route.destination) : undefined;
      const decision = decideRelease(current, this.own(route), route.onRelease);
      const line = { route: routeName, table: tableId, destination: route.destination, from: targetText(current), to: "none", reason: decision.reason };
      if (decision.write === "none") {
        this.deps.log.info({ ...line, ms: elapsed(started) }, "route left in place on release");
        continue;
      }
      if (this.deps.dryRun) {
        this.deps.log.info({ ...line, ms: elapsed(started), dryRun: true }, "dry run: would delete route");
        continue;
      }
      try {
        await this.write(route, "delete", tableId, gate);
        this.deps.log.info({ ...line, ms: elapsed(started) }, "route deleted");
      } catch (err) {
        if (err instanceof GateClosedError) {
          this.deps.log.warn({ ...line, ms: elapsed(started) }, "route not deleted: write gate closed");
          return;
        }
        if (awsCode(err) !== "InvalidRoute.NotFound") throw err;
        this.deps.log.info({ ...line, reason: "already deleted by someone else", ms: elapsed(started) }, "route already absent");
      }
    }
  }

  /** Every configured route's actual target in every table (for `status`). */
  async observe(): Promise<RouteObservation[]> {
    const ids = [...new Set([...this.tablesByRoute.values()].flat())];
    const tables = ids.length ? await this.describe(ids) : new Map<string, TableSnapshot>();
    const observations: RouteObservation[] = [];
    for (const [name, tableIds] of this.tablesByRoute) {
      const route = this.route(name);
      for (const tableId of tableIds) {
        const table = tables.get(tableId);
        const current = table ? findRoute(table, route.destination) : undefined;
        const target = targetText(current);
        observations.push({ routeName: name, tableId, destination: route.destination, ...(target ? { target } : {}), state: current?.state ?? "absent" });
      }
    }
    return observations;
  }

  // ---------------------------------------------------------------- internals

  private route(name: string): RouteConfig {
    const route = this.routes.get(name);
    if (!route) throw new Error(`route "${name}" is not configured`);
    return route;
  }

  private target(route: RouteConfig): RouteTarget {
    const fallback = this.deps.toFallback ? route.fallback : undefined;
    if (fallback) return "natGateway" in fallback ? { NatGatewayId: fallback.natGateway } : { NetworkInterfaceId: fallback.networkInterface };
    return route.target === "eni" ? { NetworkInterfaceId: this.me.eniId } : { InstanceId: this.me.instanceId };
  }

  /** What counts as "already pointing where it should" for this route. */
  private own(route: RouteConfig): OwnTarget {
    const fallback = this.deps.toFallback ? route.fallback : undefined;
    if (!fallback) return this.me;
    return "natGateway" in fallback ? { instanceId: "", eniId: "", natGatewayId: fallback.natGateway } : { instanceId: "", eniId: fallback.networkInterface };
  }

  /** A takeover from another instance, written before any read (not in dry run, not to a fallback). */
  private writesBeforeReading(item: ConvergeItem): boolean {
    return !!item.takeoverFrom && item.takeoverFrom !== this.me.instanceId && !this.deps.dryRun && !this.deps.toFallback;
  }

  /** `undefined` (the whole VPC) or the table ids: filtered on `vpc-id` always. */
  private async describe(tableIds: readonly string[] | undefined, signal?: AbortSignal): Promise<Map<string, TableSnapshot>> {
    const vpcId = this.deps.identity.vpcId;
    const what = tableIds ? `${tableIds.length} tables in ${vpcId}` : `tables of ${vpcId}`;
    const tables = await withRetries("ec2:DescribeRouteTables", what, this.readPolicy, (s) => describeVpcTables(this.deps.ec2, vpcId, tableIds, s), signal ? { signal } : {});
    return new Map(tables.filter((t) => t.vpcId === vpcId).map((t) => [t.id, t]));
  }

  /** The ids one describe must cover so every route's selector can be re-resolved, or undefined: the whole VPC. */
  private coveringIds(): string[] | undefined {
    const covers = [...this.routes.values()].map((r) => selectorIdCover(r.table));
    if (covers.some((c) => c === undefined)) return undefined;
    return [...new Set(covers.flatMap((c) => c ?? []))].sort();
  }

  /**
   * Selectors are live: every route's tables are re-resolved from the describe a reconcile
   * just made. A table that starts matching is written by this holder from now on; one that
   * stops matching is logged once and never touched again (not deleted, not rewritten).
   */
  private refreshTables(described: readonly TableSnapshot[]): void {
    const { log, identity } = this.deps;
    const live = reresolveTables(described, [...this.routes.values()], identity.vpcId, this.knownSubnets, this.tablesByRoute);
    for (const { route, table } of live.started) log.info({ route, table, event: "tableMatched" }, `route table ${table} now matches the selector of ${route}: claimed by its holder`);
    for (const { route, table } of live.stopped) log.warn({ route, table, event: "tableUnmatched" }, `route table ${table} no longer matches the selector of ${route} (untagged, re-associated or deleted): left as it is`);
    const conflicts = new Set<string>();
    for (const c of live.conflicts) {
      const key = `${c.table} ${c.destination} ${c.routes.join(",")}`;
      conflicts.add(key);
      if (!this.loggedConflicts.has(key)) log.error({ table: c.table, destination: c.destination, routes: c.routes, keptBy: c.keptBy ?? null, event: "tableConflict" }, `routes ${c.routes.join(", ")} all match ${c.destination} in ${c.table}: ${c.keptBy ? `it stays with ${c.keptBy}` : "none of them writes it"} (give each table and destination one route)`);
    }
    this.loggedConflicts = conflicts;
    for (const [name, ids] of live.tables) {
      if (ids.length === 0 && (this.tablesByRoute.get(name)?.length ?? 0) > 0) log.warn({ route: name, event: "tableUnmatched" }, `the selector of ${name} matches no route table in ${identity.vpcId} now`);
      this.tablesByRoute.set(name, ids);
    }
  }

  /**
   * Brings one route's tables to this instance; non-fatal write failures are returned, after
   * the other tables were tried. `read` is the describe, or for a takeover written before
   * reading, the instance the key says held the route.
   */
  private async converge1(
    route: RouteConfig,
    read: Map<string, TableSnapshot> | { takeoverFrom: string },
    gate: WriteGate,
    started: number,
    cause: "claim" | "reconcile",
    signal?: AbortSignal,
    force = false,
  ): Promise<{ result: ClaimResult; failure?: unknown }> {
    const target = this.target(route);
    const to = "NatGatewayId" in target ? target.NatGatewayId : "NetworkInterfaceId" in target ? target.NetworkInterfaceId : target.InstanceId;
    const results: ClaimResult["tables"] = [];
    let gateClosed = false;
    let failure: unknown;
    for (const tableId of this.tablesOf(route.name)) {
      const tableStarted = performance.now();
      let decision: ClaimDecision;
      let from: string | undefined;
      if (read instanceof Map) {
        const table = read.get(tableId);
        if (!table) {
          this.deps.log.error({ route: route.name, table: tableId, cause }, "route table no longer exists");
          results.push({ tableId, action: "missing" });
          continue;
        }
        const current = findRoute(table, route.destination);
        decision = forced(decideClaim(current, this.own(route)), force);
        from = targetText(current);
      } else {
        decision = { write: "replace", reason: `taken over from ${read.takeoverFrom} (written before reading)`, from: read.takeoverFrom };
        from = read.takeoverFrom;
      }
      const line = { route: route.name, table: tableId, destination: route.destination, from: from ?? "absent", to, reason: decision.reason, cause };
      const previous = from ? { previousTarget: from } : {};
      if (decision.write === "none") {
        this.deps.log.debug({ ...line, ms: elapsed(tableStarted) }, "route unchanged");
        results.push({ tableId, action: "unchanged", reason: decision.reason, ...previous });
        continue;
      }
      // The caller's signal aborting (leadership lost) closes the gate for the remaining tables too.
      if (gateClosed || signal?.aborted) {
        results.push({ tableId, action: "skipped-gate", reason: decision.reason, ...previous });
        continue;
      }
      if (this.deps.dryRun) {
        this.deps.log.info({ ...line, ms: elapsed(tableStarted), dryRun: true }, `dry run: would ${decision.write} route`);
        results.push({ tableId, action: "dry-run", reason: decision.reason, ...previous });
        continue;
      }
      try {
        const done = await this.claimWrite(route, decision.write, tableId, gate, signal);
        this.deps.log.info({ ...line, ms: elapsed(tableStarted), ...(done !== decision.write ? { fallback: done } : {}) }, `route ${done === "create" ? "created" : "replaced"}`);
        results.push({ tableId, action: done === "create" ? "created" : "replaced", reason: decision.reason, ...previous });
      } catch (err) {
        if ((err instanceof AwsCallError || err instanceof ExitError || err instanceof SourceDestCheckError) && !signal?.aborted) {
          this.deps.log.error({ ...line, ms: elapsed(tableStarted), err: err.message }, "route write failed");
          results.push({ tableId, action: "failed", reason: err.message, ...previous });
          failure ??= err;
          continue;
        }
        if (!(err instanceof GateClosedError)) throw err;
        gateClosed = true;
        this.deps.log.warn({ ...line, ms: elapsed(tableStarted) }, "route not written: write gate closed");
        results.push({ tableId, action: "skipped-gate", reason: decision.reason, ...previous });
      }
    }
    // Same-AZ mode: the secondary IP first (the EIP maps to it), then the EIP.
    let eipPrivateIp: string | undefined;
    if (route.sameAz && !gateClosed && !signal?.aborted) {
      try {
        const ip = await this.convergeSecondaryIp(route, route.sameAz, gate, force, cause);
        results.push(ip.result);
        eipPrivateIp = ip.eipPrivateIp;
      } catch (err) {
        results.push({ tableId: `ip:${route.sameAz.privateIp}`, action: "failed", reason: (err as Error).message });
        failure ??= err;
      }
    }
    if (route.eip && !gateClosed && !signal?.aborted && !(route.sameAz && failure)) {
      try {
        const eip = await this.convergeEip(route, route.eip, gate, force, cause, eipPrivateIp);
        results.push(eip);
      } catch (err) {
        results.push({ tableId: `eip:${route.eip}`, action: "failed", reason: (err as Error).message });
        failure ??= err;
      }
    }
    const result: ClaimResult = { routeName: route.name, action: summarizeClaim(results.map((r) => r.action)), tables: results, ms: elapsed(started) };
    return failure ? { result, failure } : { result };
  }

  /**
   * The route's Elastic IP follows the holder: associated with this instance's primary ENI
   * after the tables, through the same gate, then read back to verify.
   */
  /**
   * Same-AZ mode: a holder in the pair's subnet assigns the route's secondary private IP to its
   * primary ENI (taking it from the previous holder), through the same gate as route writes,
   * then reads it back. Returns the address the EIP must map to (undefined: the primary).
   */
  private async convergeSecondaryIp(
    route: RouteConfig,
    sameAz: { subnet: string; privateIp: string },
    gate: WriteGate,
    force: boolean,
    cause: string,
  ): Promise<{ result: ClaimResult["tables"][number]; eipPrivateIp?: string }> {
    const started = performance.now();
    const { ec2, log } = this.deps;
    const subject = `secondary IP ${sameAz.privateIp} for route ${route.name}`;
    const tableId = `ip:${sameAz.privateIp}`;
    const mine = sameAz.subnet === this.deps.identity.subnetId;
    const assigned = mine ? await withRetries("ec2:DescribeNetworkInterfaces", subject, this.readPolicy, (s) => privateIpsOf(ec2, this.me.eniId, s)) : undefined;
    const decision = decideSecondaryIp(sameAz, this.deps.identity.subnetId, assigned, force);
    const line = { route: route.name, privateIp: sameAz.privateIp, to: this.me.eniId, reason: decision.reason, cause };
    if (decision.action === "other-subnet") {
      log.warn({ ...line, ms: elapsed(started) }, "secondary IP not taken: holder outside the same-AZ pair's subnet");
      return { result: { tableId, action: "unchanged", reason: decision.reason } };
    }
    if (decision.action === "none") return { result: { tableId, action: "unchanged", reason: decision.reason }, eipPrivateIp: sameAz.privateIp };
    if (this.deps.dryRun) {
      log.info({ ...line, ms: elapsed(started), dryRun: true }, "dry run: would assign the secondary IP");
      return { result: { tableId, action: "dry-run", reason: decision.reason }, eipPrivateIp: sameAz.privateIp };
    }
    try {
      await withRetries("ec2:AssignPrivateIpAddresses", subject, this.writePolicy, (s) => assignSecondaryIp(ec2, this.me.eniId, sameAz.privateIp, s), { proceed: () => gate(route.name) });
    } catch (err) {
      if (!(err instanceof GateClosedError)) throw err;
      log.warn({ ...line, ms: elapsed(started) }, "secondary IP not assigned: write gate closed");
      return { result: { tableId, action: "skipped-gate", reason: decision.reason } };
    }
    const after = await withRetries("ec2:DescribeNetworkInterfaces", subject, this.readPolicy, (s) => privateIpsOf(ec2, this.me.eniId, s));
    if (!after.includes(sameAz.privateIp)) throw new AwsCallError(`${subject}: assigned, but not on ${this.me.eniId} when read back`, { kind: "transient", code: "PrivateIpNotAssigned", message: "read back elsewhere" }, "ec2:AssignPrivateIpAddresses");
    log.info({ ...line, ms: elapsed(started) }, "secondary IP assigned");
    return { result: { tableId, action: "associated", reason: decision.reason }, eipPrivateIp: sameAz.privateIp };
  }

  private async convergeEip(route: RouteConfig, allocationId: string, gate: WriteGate, force: boolean, cause: string, privateIp?: string): Promise<ClaimResult["tables"][number]> {
    const started = performance.now();
    const { ec2, log } = this.deps;
    const subject = `Elastic IP ${allocationId} for route ${route.name}`;
    const tableId = `eip:${allocationId}`;
    const state = await withRetries("ec2:DescribeAddresses", subject, this.readPolicy, (s) => describeEip(ec2, allocationId, s));
    const decision = decideEip(state, this.me.eniId, force, privateIp);
    const line = { route: route.name, eip: allocationId, publicIp: state.publicIp, from: state.networkInterfaceId ?? "none", to: this.me.eniId, ...(privateIp ? { privateIp } : {}), reason: decision.reason, cause };
    if (!decision.associate) return { tableId, action: "unchanged", reason: decision.reason };
    if (this.deps.dryRun) {
      log.info({ ...line, ms: elapsed(started), dryRun: true }, "dry run: would associate the Elastic IP");
      return { tableId, action: "dry-run", reason: decision.reason };
    }
    try {
      await withRetries("ec2:AssociateAddress", subject, this.writePolicy, (s) => associateEip(ec2, allocationId, this.me.eniId, s, privateIp), { proceed: () => gate(route.name) });
    } catch (err) {
      if (!(err instanceof GateClosedError)) throw err;
      log.warn({ ...line, ms: elapsed(started) }, "Elastic IP not associated: write gate closed");
      return { tableId, action: "skipped-gate", reason: decision.reason };
    }
    const after = await withRetries("ec2:DescribeAddresses", subject, this.readPolicy, (s) => describeEip(ec2, allocationId, s));
    if (after.networkInterfaceId !== this.me.eniId || (privateIp && after.privateIpAddress !== privateIp)) throw new AwsCallError(`${subject}: associated, but reads back on ${after.networkInterfaceId ?? "nothing"}`, { kind: "transient", code: "EipNotAssociated", message: "read back elsewhere" }, "ec2:AssociateAddress");
    log.info({ ...line, ms: elapsed(started) }, "Elastic IP associated");
    return { tableId, action: "associated", reason: decision.reason, ...(state.networkInterfaceId ? { previousTarget: state.networkInterfaceId } : {}) };
  }

  /**
   * Create or replace; when the route changed between our read and our write (someone else
   * created or deleted it), the other call is sent instead of failing the claim.
   */
  private async claimWrite(route: RouteConfig, write: "create" | "replace", tableId: string, gate: WriteGate, signal?: AbortSignal): Promise<"create" | "replace"> {
    try {
      await this.write(route, write, tableId, gate, signal);
      return write;
    } catch (err) {
      const code = awsCode(err);
      const message = (err as Error).message;
      if (write === "create" && code === "RouteAlreadyExists") {
        await this.write(route, "replace", tableId, gate, signal);
        return "replace";
      }
      if (write === "replace" && (code === "InvalidRoute.NotFound" || (code === "InvalidParameterValue" && /no route/i.test(message)))) {
        await this.write(route, "create", tableId, gate, signal);
        return "create";
      }
      throw err;
    }
  }

  private write(route: RouteConfig, write: RouteWrite, tableId: string, gate: WriteGate, signal?: AbortSignal): Promise<void> {
    const subject = `route ${route.name} ${route.destination} in ${tableId}`;
    return withRetries(WRITE_ACTIONS[write], subject, this.writePolicy, (s) => sendRouteWrite(this.deps.ec2, write, tableId, route.destination, this.target(route), s), {
      ...(signal ? { signal } : {}),
      proceed: () => gate(route.name),
      onRetry: (failure, delayMs, attempt) => this.deps.log.warn({ route: route.name, table: tableId, action: WRITE_ACTIONS[write], code: failure.code, kind: failure.kind, attempt, delayMs }, "route write failed, retrying"),
    });
  }

  /** What the start-up read of the source/dest check found: undefined until read. */
  private sourceDestCheckAtStart: boolean | undefined;

  /**
   * Reads the source/dest check and, when `fix` will turn it off, proves the permission with a
   * DryRun request (start-up reads before it writes: a missing ec2:DescribeInstanceAttribute
   * or ec2:ModifyInstanceAttribute stops the agent before it registers in Consul). Throws
   * ExitError(EXIT.aws).
   */
  async readSourceDestCheck(): Promise<void> {
    if (this.deps.config.sourceDestCheck === "ignore") return;
    const { ec2, identity } = this.deps;
    this.sourceDestCheckAtStart = await withRetries("ec2:DescribeInstanceAttribute", `sourceDestCheck of ${identity.instanceId}`, this.readPolicy, (s) => readSourceDestCheck(ec2, identity.instanceId, s));
    if (this.sourceDestCheckAtStart && this.deps.config.sourceDestCheck === "fix" && !this.deps.dryRun) {
      await withRetries("ec2:ModifyInstanceAttribute", `sourceDestCheck of ${identity.instanceId} (DryRun)`, this.readPolicy, (s) => proveSourceDestCheckWrite(ec2, identity.instanceId, s));
    }
  }

  /** In `fix` mode turns the check off (the one write at start), from the start-up read. Throws ExitError(EXIT.aws). */
  async applySourceDestCheckMode(): Promise<void> {
    const mode = this.config.sourceDestCheck;
    if (mode === "ignore") return;
    if (this.sourceDestCheckAtStart === undefined) await this.readSourceDestCheck();
    const { ec2, identity, log } = this.deps;
    if (!this.sourceDestCheckAtStart) {
      log.info({ instance: identity.instanceId, mode }, "source/destination check already off");
      return;
    }
    if (mode === "verify") {
      this.sourceDestCheckOn = true;
      log.error({ instance: identity.instanceId, mode }, "source/destination check is on: this node will not claim routes until it is off");
      return;
    }
    if (this.deps.dryRun) {
      log.info({ instance: identity.instanceId, mode, dryRun: true }, "dry run: would disable source/destination check");
      return;
    }
    await withRetries("ec2:ModifyInstanceAttribute", `sourceDestCheck of ${identity.instanceId}`, this.writePolicy, (s) => disableSourceDestCheck(ec2, identity.instanceId, s));
    log.info({ instance: identity.instanceId, mode }, "source/destination check disabled");
  }

  /** In verify mode, re-reads a check seen on, so an operator's fix is picked up. */
  private async ensureSourceDestCheckOff(routeName: string): Promise<void> {
    if (!this.sourceDestCheckOn) return;
    const { ec2, identity } = this.deps;
    this.sourceDestCheckOn = await withRetries("ec2:DescribeInstanceAttribute", `sourceDestCheck of ${identity.instanceId}`, this.readPolicy, (s) => readSourceDestCheck(ec2, identity.instanceId, s));
    if (this.sourceDestCheckOn) throw new SourceDestCheckError(identity.instanceId, routeName);
  }
}

/** One route's write outcome for the election: fatal means EC2 refused it for good. */
export type RouteWriteOutcome = { ok: true; result: ClaimResult } | { ok: false; fatal: boolean; message: string; error: unknown };

function failed(err: unknown): RouteWriteOutcome {
  const fatal = err instanceof ExitError || err instanceof SourceDestCheckError;
  return { ok: false, fatal, message: (err as Error).message, error: err };
}

/** A re-assert writes even a route the describe shows ours (the read may be stale). */
function forced(decision: ClaimDecision, force: boolean): ClaimDecision {
  if (!force || decision.write !== "none") return decision;
  return { write: "replace", reason: "re-assert", from: "this instance" };
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}
