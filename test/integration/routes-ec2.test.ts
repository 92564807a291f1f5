import { CreateRouteCommand, DeleteRouteCommand, DescribeInstanceAttributeCommand, DescribeRouteTablesCommand, EC2Client, ModifyInstanceAttributeCommand, ReplaceRouteCommand, StopInstancesCommand, type Instance } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AwsCallError, awsClientOptions, createEc2Client } from "../../agent/aws/index.js";
import type { Config } from "../../agent/config/index.js";
import { ExitError, EXIT } from "../../agent/exit-codes.js";
import { RouteController, SourceDestCheckError, type WriteGate } from "../../agent/routes/index.js";
import { createSubnet, createTable, createVpc, identityOf, mainTableOf, memoryLogger, readRoute, runInstance, testConfig } from "../support/ec2-world.js";
import { startFaultProxy, type StartedFaultProxy } from "../support/fault-proxy.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { waitUntil } from "../support/process.js";

const open: WriteGate = async () => true;
const ROUTE_WRITES = new Set(["CreateRoute", "ReplaceRoute", "DeleteRoute"]);

describe("routes on EC2 (moto behind the fault proxy)", () => {
  let moto: StartedMoto;
  let proxy: StartedFaultProxy;
  let admin: EC2Client;
  const clients: EC2Client[] = [];

  /** An EC2 client for one simulated node: its calls are logged under `caller`. */
  function nodeClient(caller: string): EC2Client {
    const client = createEc2Client({ region: EMULATOR_AWS.region, endpoint: proxy.endpointFor(caller), credentials: EMULATOR_AWS.credentials });
    clients.push(client);
    return client;
  }

  function controller(caller: string, instance: Instance, config: Config, dryRun = false) {
    const { log, lines } = memoryLogger();
    const ctl = new RouteController({ ec2: nodeClient(caller), config, identity: identityOf(instance), log, dryRun });
    return { ctl, lines };
  }

  function routeWrites(caller?: string) {
    return proxy.mutatingCalls(caller).filter((c) => ROUTE_WRITES.has(c.action));
  }

  beforeAll(async () => {
    moto = await startMoto();
    proxy = await startFaultProxy({ upstream: moto.endpoint });
    admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  });
  afterAll(async () => {
    for (const c of clients) c.destroy();
    admin?.destroy();
    await proxy?.stop();
    await moto?.stop();
  });
  beforeEach(async () => {
    await moto.reset();
    proxy.reset();
  });

  describe("route-table discovery", () => {
    async function world() {
      const { vpcId } = await createVpc(admin, "10.1.0.0/16");
      const subnetA = await createSubnet(admin, vpcId, "10.1.1.0/24");
      const subnetB = await createSubnet(admin, vpcId, "10.1.2.0/24");
      const subnetPub = await createSubnet(admin, vpcId, "10.1.3.0/24");
      const subnetLoose = await createSubnet(admin, vpcId, "10.1.4.0/24");
      const main = await mainTableOf(admin, vpcId);
      const a = await createTable(admin, vpcId, { tags: { tier: "private", az: "a" }, subnets: [subnetA] });
      const b = await createTable(admin, vpcId, { tags: { tier: "private", az: "b" }, subnets: [subnetB] });
      const pub = await createTable(admin, vpcId, { tags: { tier: "public" }, subnets: [subnetPub] });
      const other = await createVpc(admin, "10.2.0.0/16");
      const otherSubnet = await createSubnet(admin, other.vpcId, "10.2.1.0/24");
      const otherTable = await createTable(admin, other.vpcId, { tags: { tier: "private", az: "a" }, subnets: [otherSubnet] });
      const self = await runInstance(admin, subnetA);
      return { vpcId, subnetA, subnetB, subnetLoose, main, a, b, pub, otherSubnet, otherTable, self };
    }

    it("finds tables by id, tags, subnet, main and and/or/not, only in the instance's own VPC", async () => {
      const w = await world();
      const routes = [
        { name: "by-id", table: { id: w.b } },
        { name: "by-tags", table: { tags: { tier: "private" } } },
        { name: "by-subnet", table: { subnet: w.subnetA } },
        { name: "by-loose-subnet", table: { subnet: w.subnetLoose } },
        { name: "by-main", table: { main: true } },
        { name: "by-and", table: { and: [{ tags: { tier: "private" } }, { tags: { az: "a" } }] } },
        { name: "by-or", table: { or: [{ main: true }, { subnet: w.subnetB }] } },
        { name: "by-not", table: { not: { or: [{ main: true }, { tags: { tier: "public" } }] } } },
      ].map((r, i) => ({ ...r, destination: `10.9.${i}.0/24` }));
      const { ctl } = controller("node-a", w.self, testConfig(routes));
      await ctl.prepare();
      const sorted = (ids: string[]) => [...ids].sort();
      expect(ctl.tablesOf("by-id")).toEqual([w.b]);
      expect(ctl.tablesOf("by-tags")).toEqual(sorted([w.a, w.b]));
      expect(ctl.tablesOf("by-subnet")).toEqual([w.a]);
      expect(ctl.tablesOf("by-loose-subnet")).toEqual([w.main]);
      expect(ctl.tablesOf("by-main")).toEqual([w.main]);
      expect(ctl.tablesOf("by-and")).toEqual([w.a]);
      expect(ctl.tablesOf("by-or")).toEqual(sorted([w.main, w.b]));
      expect(ctl.tablesOf("by-not")).toEqual(sorted([w.a, w.b]));
      // The other VPC's table carries the same tags and is never selected.
      expect(ctl.tablesOf("by-and")).not.toContain(w.otherTable);
      const describes = proxy.calls({ caller: "node-a", action: "DescribeRouteTables" });
      expect(describes[0]?.params["Filter.1.Name"]).toBe("vpc-id");
      expect(describes[0]?.params["Filter.1.Value.1"]).toBe(w.vpcId);
      expect(proxy.mutatingCalls()).toEqual([]);
    });

    it("refuses a table or subnet of another VPC, and names an unknown id, without writing", async () => {
      const w = await world();
      const attempt = async (table: unknown) => {
        const { ctl } = controller("node-a", w.self, testConfig([{ name: "nat", table, destination: "0.0.0.0/0" }]));
        return ctl.prepare().then(
          () => undefined,
          (err: unknown) => err,
        );
      };
      const foreign = await attempt({ or: [{ id: w.a }, { id: w.otherTable }] });
      expect(foreign).toBeInstanceOf(ExitError);
      expect((foreign as ExitError).exitCode).toBe(EXIT.aws);
      const otherVpc = (await admin.send(new DescribeRouteTablesCommand({ RouteTableIds: [w.otherTable] }))).RouteTables![0]!.VpcId;
      expect((foreign as Error).message).toBe(`route "nat": route table ${w.otherTable} is in ${otherVpc}, not in this instance's VPC ${w.vpcId}: refusing to manage another VPC's table`);
      const foreignSubnet = await attempt({ subnet: w.otherSubnet });
      expect((foreignSubnet as Error).message).toMatch(new RegExp(`subnet ${w.otherSubnet} is in vpc-\\w+, not in this instance's VPC ${w.vpcId}`));
      const unknown = await attempt({ id: "rtb-0123456789abcdef0" });
      expect((unknown as Error).message).toMatch(/unknown route table id rtb-0123456789abcdef0/);
      const nothing = await attempt({ tags: { tier: "nope" } });
      expect((nothing as Error).message).toMatch(/matches no route table in vpc-/);
      expect(proxy.mutatingCalls()).toEqual([]);
    });
  });

  describe("claim", () => {
    /** Four tables per family: the route absent, foreign, blackholed (target stopped), already ours. */
    async function claimWorld() {
      const { vpcId } = await createVpc(admin, "10.3.0.0/16", { ipv6: true });
      const subnet = await createSubnet(admin, vpcId, "10.3.1.0/24");
      const self = await runInstance(admin, subnet);
      const other = await runInstance(admin, subnet);
      const stopped = await runInstance(admin, subnet);
      const tables: Record<string, string> = {};
      for (const family of ["v4", "v6"] as const) {
        const destination = family === "v4" ? "0.0.0.0/0" : "::/0";
        const dest = family === "v4" ? { DestinationCidrBlock: destination } : { DestinationIpv6CidrBlock: destination };
        for (const state of ["absent", "foreign", "blackhole", "own"] as const) {
          const id = await createTable(admin, vpcId);
          tables[`${family}-${state}`] = id;
          const target = state === "foreign" ? other : state === "blackhole" ? stopped : state === "own" ? self : undefined;
          if (target) await admin.send(new CreateRouteCommand({ RouteTableId: id, ...dest, InstanceId: target.InstanceId }));
        }
      }
      await admin.send(new StopInstancesCommand({ InstanceIds: [stopped.InstanceId!] }));
      const routes = Object.entries(tables).map(([name, id]) => ({ name, table: { id }, destination: name.startsWith("v4") ? "0.0.0.0/0" : "::/0" }));
      return { vpcId, subnet, self, other, stopped, tables, routes };
    }

    for (const family of ["v4", "v6"] as const) {
      it(`IPv${family[1]}: creates an absent route, replaces a foreign or blackholed one, leaves its own alone`, async () => {
        const w = await claimWorld();
        const destination = family === "v4" ? "0.0.0.0/0" : "::/0";
        const { ctl, lines } = controller("node-a", w.self, testConfig(w.routes));
        await ctl.prepare();
        const blackholed = (await ctl.observe()).find((o) => o.routeName === `${family}-blackhole`);
        expect(blackholed).toMatchObject({ state: "blackhole", target: w.stopped.InstanceId });
        proxy.clearLog();

        const absent = await ctl.claim(`${family}-absent`, open);
        const foreign = await ctl.claim(`${family}-foreign`, open);
        const blackhole = await ctl.claim(`${family}-blackhole`, open);
        const own = await ctl.claim(`${family}-own`, open);

        expect(absent).toMatchObject({ action: "created", tables: [{ tableId: w.tables[`${family}-absent`], action: "created" }] });
        expect(foreign).toMatchObject({ action: "replaced", tables: [{ action: "replaced", previousTarget: w.other.InstanceId }] });
        expect(blackhole).toMatchObject({ action: "replaced", tables: [{ action: "replaced", previousTarget: w.stopped.InstanceId }] });
        expect(blackhole.tables[0]?.reason).toMatch(/^blackhole/);
        expect(own).toMatchObject({ action: "unchanged", tables: [{ action: "unchanged" }] });
        for (const state of ["absent", "foreign", "blackhole", "own"]) {
          expect((await readRoute(admin, w.tables[`${family}-${state}`]!, destination))?.InstanceId).toBe(w.self.InstanceId);
        }
        const writes = routeWrites("node-a").map((c) => `${c.action} ${c.params.RouteTableId} ${c.params.DestinationCidrBlock ?? c.params.DestinationIpv6CidrBlock}`);
        expect(writes).toEqual([
          `CreateRoute ${w.tables[`${family}-absent`]} ${destination}`,
          `ReplaceRoute ${w.tables[`${family}-foreign`]} ${destination}`,
          `ReplaceRoute ${w.tables[`${family}-blackhole`]} ${destination}`,
        ]);
        const decisions = lines.filter((l) => typeof l.msg === "string" && /^route (created|replaced|unchanged)$/.test(l.msg as string));
        expect(decisions).toHaveLength(4);
        expect(decisions[1]).toMatchObject({ route: `${family}-foreign`, from: w.other.InstanceId, to: w.self.InstanceId, reason: `points at ${w.other.InstanceId}` });
        expect(typeof decisions[1]?.ms).toBe("number");
      });
    }

    it("targets the primary ENI when asked, and counts a route naming either id as its own", async () => {
      const w = await claimWorld();
      const identity = identityOf(w.self);
      const routes = w.routes.filter((r) => r.name.startsWith("v4-")).map((r) => ({ ...r, target: "eni" }));
      const { ctl } = controller("node-a", w.self, testConfig(routes));
      await ctl.prepare();
      expect((await ctl.claim("v4-foreign", open)).action).toBe("replaced");
      expect((await readRoute(admin, w.tables["v4-foreign"]!, "0.0.0.0/0"))?.NetworkInterfaceId).toBe(identity.eniId);
      // moto shows only InstanceId on v4-own; with the proxy filling both (as AWS), it is still ours.
      expect((await ctl.claim("v4-own", open)).action).toBe("unchanged");
      proxy.setFillRouteTargets(true);
      expect((await ctl.claim("v4-own", open)).action).toBe("unchanged");
      expect((await ctl.claim("v4-foreign", open)).action).toBe("unchanged");
    });

    it("a closed gate stops every write", async () => {
      const w = await claimWorld();
      const { ctl } = controller("node-a", w.self, testConfig([{ name: "two", table: { or: [{ id: w.tables["v4-absent"]! }, { id: w.tables["v4-foreign"]! }] }, destination: "0.0.0.0/0" }]));
      await ctl.prepare();
      const gateCalls: string[] = [];
      const result = await ctl.claim("two", async (name) => {
        gateCalls.push(name);
        return false;
      });
      expect(result.action).toBe("skipped-gate");
      expect(result.tables.map((t) => t.action)).toEqual(["skipped-gate", "skipped-gate"]);
      expect(gateCalls).toEqual(["two"]);
      expect(routeWrites()).toEqual([]);
    });

    it("RequestLimitExceeded on the first two ReplaceRoute calls: the route still converges in one claim", async () => {
      const w = await claimWorld();
      const { ctl, lines } = controller("node-a", w.self, testConfig(w.routes));
      await ctl.prepare();
      proxy.throttle("ReplaceRoute", 2);
      const result = await ctl.claim("v4-foreign", open);
      expect(result.action).toBe("replaced");
      expect((await readRoute(admin, w.tables["v4-foreign"]!, "0.0.0.0/0"))?.InstanceId).toBe(w.self.InstanceId);
      expect(proxy.calls({ caller: "node-a", action: "ReplaceRoute" }).map((c) => c.status)).toEqual([503, 503, 200]);
      expect(lines.filter((l) => l.msg === "route write failed, retrying").map((l) => l.code)).toEqual(["RequestLimitExceeded", "RequestLimitExceeded"]);
    });

    it("a 5xx costs one of the write attempts; two in a row give up", async () => {
      const w = await claimWorld();
      const { ctl } = controller("node-a", w.self, testConfig(w.routes));
      await ctl.prepare();
      proxy.serverErrors(1, { action: "ReplaceRoute" });
      expect((await ctl.claim("v4-foreign", open)).action).toBe("replaced");
      proxy.serverErrors(2, { action: "ReplaceRoute" });
      const err = await ctl.claim("v6-foreign", open).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AwsCallError);
      expect((err as Error).message).toMatch(/ec2:ReplaceRoute .*gave up after 2 attempts/);
      expect(proxy.calls({ action: "ReplaceRoute" }).map((c) => c.status)).toEqual([500, 200, 500, 500]);
    });

    it("one table's failed write does not stop the others; the failure is reported after", async () => {
      const w = await claimWorld();
      const both = { or: [{ id: w.tables["v4-foreign"]! }, { id: w.tables["v4-blackhole"]! }] };
      const { ctl, lines } = controller("node-a", w.self, testConfig([
        { name: "both", table: both, destination: "0.0.0.0/0" },
        { name: "v6", table: { id: w.tables["v6-foreign"]! }, destination: "::/0" },
      ]));
      await ctl.prepare();
      proxy.serverErrors(2, { action: "ReplaceRoute" });
      await expect(ctl.claim("both", open)).rejects.toBeInstanceOf(AwsCallError);
      const written = await Promise.all([w.tables["v4-foreign"]!, w.tables["v4-blackhole"]!].map(async (t) => (await readRoute(admin, t, "0.0.0.0/0"))?.InstanceId));
      expect(written.filter((id) => id === w.self.InstanceId)).toHaveLength(1);
      expect(lines.filter((l) => l.msg === "route write failed")).toHaveLength(1);

      // Routes converge side by side: fail only the IPv4 write, whatever the order.
      proxy.serverErrors(2, { action: "ReplaceRoute", match: (p) => p.DestinationCidrBlock === "0.0.0.0/0" });
      await expect(ctl.reconcile(["both", "v6"], open)).rejects.toBeInstanceOf(AwsCallError);
      expect((await readRoute(admin, w.tables["v6-foreign"]!, "::/0"))?.InstanceId).toBe(w.self.InstanceId);
      expect((await ctl.reconcile(["both", "v6"], open)).map((r) => r.action)).toEqual(["replaced", "unchanged"]);
    });

    it("the caller's signal (leadership lost) cancels the write in flight and the remaining tables", async () => {
      const w = await claimWorld();
      const both = { or: [{ id: w.tables["v4-foreign"]! }, { id: w.tables["v4-blackhole"]! }] };
      const { ctl } = controller("node-a", w.self, testConfig([{ name: "both", table: both, destination: "0.0.0.0/0" }]));
      await ctl.prepare();
      const lost = new AbortController();
      proxy.beforeForward("ReplaceRoute", async () => lost.abort(new Error("lock lost")));
      await expect(ctl.claim("both", open, lost.signal)).rejects.toThrow(/cancelled by the caller/);
      await waitUntil("the first ReplaceRoute is logged", async () => (proxy.calls({ action: "ReplaceRoute" }).length > 0 ? true : undefined), { timeoutMs: 5000 });
      expect(proxy.calls({ action: "ReplaceRoute" })).toHaveLength(1);
    });

    it("a write that hangs past aws.writeTimeout is abandoned at the deadline", async () => {
      const w = await claimWorld();
      const { ctl } = controller("node-a", w.self, testConfig(w.routes, { aws: { writeTimeout: "300ms" } }));
      await ctl.prepare();
      proxy.delay("ReplaceRoute", 1500);
      const err = await ctl.claim("v4-foreign", open).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AwsCallError);
      expect((err as Error).message).toMatch(/ec2:ReplaceRoute \(route v4-foreign .*\): no success within 300 ms/);
      // The proxy still forwards the held request: the late write the lock-delay rule exists for.
      await waitUntil("the held ReplaceRoute reaches moto", async () => (proxy.calls({ action: "ReplaceRoute" }).length === 1 ? true : undefined), { timeoutMs: 5000 });
    });

    it("a route created or deleted between the read and the write is written with the other call", async () => {
      const w = await claimWorld();
      const { ctl } = controller("node-a", w.self, testConfig(w.routes));
      await ctl.prepare();
      proxy.beforeForward("CreateRoute", async () => {
        await admin.send(new CreateRouteCommand({ RouteTableId: w.tables["v4-absent"], DestinationCidrBlock: "0.0.0.0/0", InstanceId: w.other.InstanceId }));
      });
      const appeared = await ctl.claim("v4-absent", open);
      expect(appeared).toMatchObject({ action: "replaced" });
      proxy.beforeForward("ReplaceRoute", async () => {
        await admin.send(new DeleteRouteCommand({ RouteTableId: w.tables["v4-foreign"], DestinationCidrBlock: "0.0.0.0/0" }));
      });
      const vanished = await ctl.claim("v4-foreign", open);
      expect(vanished).toMatchObject({ action: "created" });
      for (const table of [w.tables["v4-absent"]!, w.tables["v4-foreign"]!]) {
        expect((await readRoute(admin, table, "0.0.0.0/0"))?.InstanceId).toBe(w.self.InstanceId);
      }
      expect(routeWrites("node-a").map((c) => `${c.action} ${c.status}`)).toEqual(["CreateRoute 400", "ReplaceRoute 200", "ReplaceRoute 400", "CreateRoute 200"]);
    });

    it("a takeover from another instance is written before any read: ReplaceRoute first, CreateRoute where the route is absent; a re-assert or a start-up claim reads first", async () => {
      const w = await claimWorld();
      const { ctl, lines } = controller("node-a", w.self, testConfig(w.routes));
      await ctl.prepare();
      proxy.clearLog();
      const outcomes = await ctl.converge(
        [
          { name: "v4-foreign", force: false, takeoverFrom: w.other.InstanceId! },
          { name: "v4-absent", force: false, takeoverFrom: w.other.InstanceId! },
        ],
        open,
      );
      expect(outcomes.map((o) => (o.ok ? o.result.action : o.message))).toEqual(["replaced", "created"]);
      expect(proxy.calls({ caller: "node-a" }).map((c) => `${c.action} ${c.params.RouteTableId} ${c.status}`).sort()).toEqual(
        [`ReplaceRoute ${w.tables["v4-foreign"]} 200`, `ReplaceRoute ${w.tables["v4-absent"]} 400`, `CreateRoute ${w.tables["v4-absent"]} 200`].sort(),
      );
      for (const table of [w.tables["v4-foreign"]!, w.tables["v4-absent"]!]) expect((await readRoute(admin, table, "0.0.0.0/0"))?.InstanceId).toBe(w.self.InstanceId);
      expect(lines.find((l) => l.route === "v4-foreign" && l.msg === "route replaced")).toMatchObject({ from: w.other.InstanceId, reason: `taken over from ${w.other.InstanceId} (written before reading)` });

      // Not a takeover (this instance held the key before, or a re-assert): one describe, then only what is not ours.
      proxy.clearLog();
      const again = await ctl.converge([{ name: "v4-foreign", force: false, takeoverFrom: w.self.InstanceId! }, { name: "v4-own", force: false, takeoverFrom: w.other.InstanceId! }], open);
      expect(again.map((o) => (o.ok ? o.result.action : o.message))).toEqual(["unchanged", "unchanged"]);
      expect(proxy.calls({ caller: "node-a" }).map((c) => c.action)).toEqual(["DescribeRouteTables"]);
    });

    it("an AccessDenied names the missing permission", async () => {
      const w = await claimWorld();
      const { ctl } = controller("node-a", w.self, testConfig(w.routes));
      await ctl.prepare();
      proxy.failWith("ReplaceRoute", 1, { status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation." });
      const err = await ctl.claim("v4-foreign", open).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ExitError);
      expect((err as ExitError).exitCode).toBe(EXIT.aws);
      expect((err as Error).message).toMatch(new RegExp(`^missing IAM permission ec2:ReplaceRoute \\(route v4-foreign 0\\.0\\.0\\.0/0 in ${w.tables["v4-foreign"]}\\)`));
      expect(proxy.calls({ action: "ReplaceRoute" })).toHaveLength(1);

      proxy.failWith("DescribeRouteTables", 1, { status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation." });
      const { ctl: fresh } = controller("node-b", w.self, testConfig(w.routes));
      await expect(fresh.prepare()).rejects.toThrow(/^missing IAM permission ec2:DescribeRouteTables/);
    });

    it("release: delete removes the route only while it is ours; keep never writes", async () => {
      const w = await claimWorld();
      const routes = [
        { name: "anycast", table: { id: w.tables["v4-own"]! }, destination: "0.0.0.0/0", onRelease: "delete" },
        { name: "anycast-foreign", table: { id: w.tables["v4-foreign"]! }, destination: "0.0.0.0/0", onRelease: "delete" },
        { name: "nat", table: { id: w.tables["v6-own"]! }, destination: "::/0" },
      ];
      const { ctl } = controller("node-a", w.self, testConfig(routes));
      await ctl.prepare();
      await ctl.release("anycast", open);
      await ctl.release("anycast-foreign", open);
      await ctl.release("nat", open);
      expect(await readRoute(admin, w.tables["v4-own"]!, "0.0.0.0/0")).toBeUndefined();
      expect((await readRoute(admin, w.tables["v4-foreign"]!, "0.0.0.0/0"))?.InstanceId).toBe(w.other.InstanceId);
      expect((await readRoute(admin, w.tables["v6-own"]!, "::/0"))?.InstanceId).toBe(w.self.InstanceId);
      expect(routeWrites().map((c) => `${c.action} ${c.params.RouteTableId}`)).toEqual([`DeleteRoute ${w.tables["v4-own"]}`]);
    });

    it("dry run: every intended write is logged and none is sent", async () => {
      const w = await claimWorld();
      const routes = [...w.routes.filter((r) => r.name !== "v4-own"), { name: "v4-own", table: { id: w.tables["v4-own"]! }, destination: "0.0.0.0/0", onRelease: "delete" }];
      await admin.send(new ModifyInstanceAttributeCommand({ InstanceId: w.self.InstanceId, SourceDestCheck: { Value: true } }));
      const { ctl, lines } = controller("node-a", w.self, testConfig(routes, { sourceDestCheck: "fix" }), true);
      await ctl.prepare();
      const claims = [];
      for (const r of routes) claims.push(await ctl.claim(r.name, open));
      const reconciled = await ctl.reconcile(routes.map((r) => r.name), open);
      await ctl.release("v4-own", open);

      expect(proxy.mutatingCalls()).toEqual([]);
      expect(claims.map((c) => c.action).sort()).toEqual(["dry-run", "dry-run", "dry-run", "dry-run", "dry-run", "dry-run", "unchanged", "unchanged"]);
      expect(reconciled.filter((c) => c.action === "dry-run")).toHaveLength(6);
      const would = lines.filter((l) => typeof l.msg === "string" && (l.msg as string).startsWith("dry run: would"));
      expect(would.map((l) => l.msg)).toContain("dry run: would disable source/destination check");
      expect(would.map((l) => l.msg)).toContain("dry run: would delete route");
      expect(would.filter((l) => l.msg === "dry run: would create route")).toHaveLength(4);
      expect((await readRoute(admin, w.tables["v4-foreign"]!, "0.0.0.0/0"))?.InstanceId).toBe(w.other.InstanceId);
      expect(await readRoute(admin, w.tables["v4-absent"]!, "0.0.0.0/0")).toBeUndefined();
    });

    it("source/dest check: fix disables it at start; verify refuses to claim while it is on", async () => {
      const w = await claimWorld();
      await admin.send(new ModifyInstanceAttributeCommand({ InstanceId: w.self.InstanceId, SourceDestCheck: { Value: true } }));
      const { ctl: verifying } = controller("node-v", w.self, testConfig(w.routes, { sourceDestCheck: "verify" }));
      await verifying.prepare();
      await expect(verifying.claim("v4-absent", open)).rejects.toBeInstanceOf(SourceDestCheckError);
      expect(proxy.mutatingCalls()).toEqual([]);

      const { ctl: fixing } = controller("node-f", w.self, testConfig(w.routes, { sourceDestCheck: "fix" }));
      await fixing.prepare();
      expect(proxy.mutatingCalls().map((c) => `${c.caller} ${c.action} ${c.params["SourceDestCheck.Value"]}`)).toEqual(["node-f ModifyInstanceAttribute false"]);
      const attr = await admin.send(new DescribeInstanceAttributeCommand({ InstanceId: w.self.InstanceId, Attribute: "sourceDestCheck" }));
      expect(attr.SourceDestCheck?.Value).toBe(false);
      // The operator's fix is picked up by the verifying node on its next claim.
      expect((await verifying.claim("v4-absent", open)).action).toBe("created");
    });
  });

  it("the client factory honours AWS_ENDPOINT_URL when the config names no endpoint", async () => {
    const saved = process.env.AWS_ENDPOINT_URL;
    process.env.AWS_ENDPOINT_URL = proxy.endpointFor("from-env");
    try {
      const options = awsClientOptions({ aws: {} }, { region: EMULATOR_AWS.region });
      expect(options.endpoint).toBeUndefined();
      const client = createEc2Client({ ...options, credentials: EMULATOR_AWS.credentials });
      clients.push(client);
      await client.send(new DescribeRouteTablesCommand({}));
      expect(proxy.calls({ caller: "from-env" }).map((c) => c.action)).toEqual(["DescribeRouteTables"]);
      expect(awsClientOptions({ region: "eu-west-1", aws: { endpoint: "http://127.0.0.1:1" } }, { region: "us-east-1" })).toEqual({ region: "eu-west-1", endpoint: "http://127.0.0.1:1" });
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL;
      else process.env.AWS_ENDPOINT_URL = saved;
    }
  });

  describe("reconcile", () => {
    it("the holder repairs a hand-edited and a blackholed route in one reconcile; the follower never writes", async () => {
      const { vpcId } = await createVpc(admin, "10.4.0.0/16", { ipv6: true });
      const subnet = await createSubnet(admin, vpcId, "10.4.1.0/24");
      const holder = await runInstance(admin, subnet);
      const follower = await runInstance(admin, subnet);
      const intruder = await runInstance(admin, subnet);
      const t1 = await createTable(admin, vpcId, { tags: { nat: "yes" } });
      const t2 = await createTable(admin, vpcId, { tags: { nat: "yes" } });
      const config = testConfig([
        { name: "nat4", table: { tags: { nat: "yes" } }, destination: "0.0.0.0/0" },
        { name: "nat6", table: { tags: { nat: "yes" } }, destination: "::/0" },
      ]);
      const a = controller("holder", holder, config);
      const b = controller("follower", follower, config);
      await a.ctl.prepare();
      await b.ctl.prepare();
      await a.ctl.claim("nat4", open);
      await a.ctl.claim("nat6", open);

      proxy.clearLog();
      const quiet = await a.ctl.reconcile(["nat4", "nat6"], open);
      expect(quiet.map((r) => r.action)).toEqual(["unchanged", "unchanged"]);
      expect(proxy.calls({ caller: "holder" }).map((c) => c.action)).toEqual(["DescribeRouteTables"]);

      // Drift: someone hand-edits nat4 in t1 to another instance; nat6 in t2 points at a stopped one.
      await admin.send(new ReplaceRouteCommand({ RouteTableId: t1, DestinationCidrBlock: "0.0.0.0/0", InstanceId: intruder.InstanceId }));
      await admin.send(new ReplaceRouteCommand({ RouteTableId: t2, DestinationIpv6CidrBlock: "::/0", InstanceId: intruder.InstanceId }));
      await admin.send(new StopInstancesCommand({ InstanceIds: [intruder.InstanceId!] }));
      // The follower sees the drift (for `status`) but is never asked to claim.
      const seen = await b.ctl.observe();
      expect(seen.filter((o) => o.target === intruder.InstanceId).map((o) => o.state).sort()).toEqual(["blackhole", "blackhole"]);
      proxy.clearLog();

      const repaired = await a.ctl.reconcile(["nat4", "nat6"], open);
      expect(repaired.map((r) => r.action)).toEqual(["replaced", "replaced"]);
      expect(proxy.calls({ caller: "holder", action: "DescribeRouteTables" })).toHaveLength(1);
      expect(routeWrites().map((c) => `${c.caller} ${c.action} ${c.params.RouteTableId}`).sort()).toEqual([`holder ReplaceRoute ${t1}`, `holder ReplaceRoute ${t2}`].sort());
      expect(routeWrites("follower")).toEqual([]);
      expect((await readRoute(admin, t1, "0.0.0.0/0"))?.InstanceId).toBe(holder.InstanceId);
      expect((await readRoute(admin, t2, "::/0"))?.InstanceId).toBe(holder.InstanceId);
    });
  });
});
