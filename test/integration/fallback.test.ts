import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AllocateAddressCommand, AssociateAddressCommand, CreateNatGatewayCommand, CreateSubnetCommand, CreateVpcCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { runCli } from "../support/agent-cli.js";
import { runInstance } from "../support/ec2-world.js";
import { routeWrites } from "../support/faults/invariants.js";
import { InvariantRecorder } from "../support/faults/recorder.js";
import { waitUntil } from "../support/process.js";
import { startSimCluster, type SimCluster, type SimNode } from "../support/cluster.js";

/**
 * Fallback target inside the agent (issue #17 item 2): when no healthy node has held a route
 * for fallbackAfter, one agent — whichever wins the route's Consul lock under its liveness-only
 * session — points the route at the fallback NAT gateway; when a node is healthy again it takes
 * the route back. Two agents, real Consul, moto behind the fault proxy (its log of every route
 * write is the oracle for "one writer at a time").
 */

let sim: SimCluster;
let natGateway: string;
const FALLBACK_AFTER_MS = 12_000; // fast profile: bound = max(3 s, 10 s) + 1 s + 0.5 s = 11.5 s
const table = "private-a";

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "fallback",
    nodes: [
      { name: "f1", az: "us-east-1a" },
      { name: "f2", az: "us-east-1a" },
    ],
    tables: [{ name: table, az: "us-east-1a" }],
    routes: [{ name: "egress", table: { tags: { Name: table } }, destination: "0.0.0.0/0", checks: ["alive"], preferredAz: "none" }],
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 2, fall: 2 } },
    extra: { reconcileInterval: "2s", election: { profile: "fast" } },
    faultProxy: true,
  });
  const allocationId = (await sim.ec2.send(new AllocateAddressCommand({ Domain: "vpc" }))).AllocationId!;
  natGateway = (await sim.ec2.send(new CreateNatGatewayCommand({ SubnetId: sim.nodes[0]!.identity.subnetId, AllocationId: allocationId }))).NatGateway!.NatGatewayId!;
  for (const node of sim.nodes) {
    node.patchConfig({ routes: [{ ...sim.spec.routes[0], fallback: { natGateway }, fallbackAfter: `${FALLBACK_AFTER_MS}ms` }] });
    node.setHealthy(true);
  }
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

describe("fallback target", () => {
  it("egress: all candidates unhealthy → the route points at the fallback NAT gateway within fallbackAfter + one write, never before; a healthy node returns → it takes the route back; one writer at a time", async () => {
    // What Consul shows all along: a writer that holds the key again (the fallback writer, then the
    // returning node) is a hand-back, not a second writer.
    const recorder = new InvariantRecorder(sim, { egress: { table, destination: "0.0.0.0/0" } }, 250).start();
    const first = await waitUntil(
      "a healthy holder with the route",
      async () => {
        const holder = sim.nodeByInstance((await sim.holders()).get("egress")?.instanceId);
        return holder && (await sim.routeTarget(table, "0.0.0.0/0")) === holder.instanceId ? holder : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );

    for (const node of sim.nodes) node.setHealthy(false);
    const released = await first.waitForEvent((e) => e.event === "released" && e.route === "egress" && e.role === undefined, 20_000);
    const freeAt = Date.parse(released.time);
    await waitUntil("the route at the fallback", async () => ((await sim.routeTarget(table, "0.0.0.0/0")) === natGateway ? true : undefined), { timeoutMs: FALLBACK_AFTER_MS + 30_000, intervalMs: 100 });
    const toFallback = routeWrites(sim.proxy!.calls(), sim.tableIds.get(table)!).filter((c) => c.params.NatGatewayId === natGateway);
    const firstFallbackWrite = toFallback[0]!;
    const afterFree = firstFallbackWrite.time - freeAt;
    console.log(`route on the fallback ${afterFree} ms after the last healthy holder released it (fallbackAfter ${FALLBACK_AFTER_MS} ms), written by ${firstFallbackWrite.caller}`);
    expect(afterFree).toBeGreaterThanOrEqual(FALLBACK_AFTER_MS);
    // fallbackAfter, the 1 s poll of peers' health, a loop cycle, the acquire and one write (generous on a loaded machine).
    expect(afterFree).toBeLessThan(FALLBACK_AFTER_MS + 6000);
    const fallbackHolder = sim.node(firstFallbackWrite.caller);
    expect((await sim.holders()).get("egress")?.instanceId).toBe(fallbackHolder.instanceId);

    // A node is healthy again: it takes the route back (after rise), and the fallback writer stops writing.
    const returning = sim.nodes.find((n) => n !== first) as SimNode;
    const healthyAt = Date.now();
    returning.setHealthy(true);
    await waitUntil(
      "the returning node holding and pointing the route at itself",
      async () => ((await sim.holders()).get("egress")?.instanceId === returning.instanceId && (await sim.routeTarget(table, "0.0.0.0/0")) === returning.instanceId ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    console.log(`route back on ${returning.name} ${Date.now() - healthyAt} ms after its check passed again (rise 2 × 200 ms)`);
    const handedBack = await fallbackHolder.waitForEvent((e) => e.event === "released" && e.route === "egress" && e.role === "fallback", 10_000);
    expect(handedBack.reason).toBe("failback");

    // Two reconciles of the returning node (it reads the tables every 2 s) past the hand-back, the
    // fallback writer's re-assert window with them; then the write log: no fallback write after
    // the hand-back, and no node writing the route while another had taken it over.
    const reconcileReads = () => sim.proxy!.calls({ caller: returning.name, action: "DescribeRouteTables" }).filter((c) => c.time > Date.parse(handedBack.time)).length;
    await waitUntil("two reconciles of the returning node after the hand-back", async () => (reconcileReads() >= 2 ? true : undefined), { timeoutMs: 20_000, intervalMs: 100 });
    const writes = routeWrites(sim.proxy!.calls(), sim.tableIds.get(table)!);
    expect(writes.filter((c) => c.params.NatGatewayId && c.time > Date.parse(handedBack.time))).toEqual([]);
    expect(writes.filter((c) => c.time > Date.parse(handedBack.time) && c.caller !== returning.name)).toEqual([]);
    await recorder.stop();
    expect(recorder.violations({ failoverBoundMs: 60_000, writeWindowMs: 60_000 }).filter((v) => v.invariant === "twoWriters")).toEqual([]);
  });
});

describe("bad egress config", () => {
  it("egress: validate --aws refuses an unknown EIP, an EIP associated outside the cluster, a fallback NAT gateway in another VPC, and a fallbackAfter under the failover bound; each names file, line and path, exits 3, and writes nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rl-egress-validate-"));
    try {
      const base = parse(readFileSync(sim.nodes[0]!.configPath, "utf8")) as Record<string, unknown> & { routes: Record<string, unknown>[] };
      const validator = sim.proxy!.endpointFor("validate");
      const route = { ...base.routes[0] };
      delete route.fallback;
      delete route.fallbackAfter;
      const write = (name: string, over: Record<string, unknown>) => {
        const file = join(dir, `${name}.yaml`);
        writeFileSync(file, stringify({ ...base, aws: { endpoint: validator }, routes: [{ ...route, ...over }] }));
        return file;
      };
      // An address held by an instance of nobody's cluster, and a NAT gateway in another VPC.
      const outsider = await runInstance(sim.ec2, sim.nodes[0]!.identity.subnetId);
      const taken = (await sim.ec2.send(new AllocateAddressCommand({ Domain: "vpc" }))).AllocationId!;
      await sim.ec2.send(new AssociateAddressCommand({ AllocationId: taken, InstanceId: outsider.InstanceId! }));
      const otherVpc = (await sim.ec2.send(new CreateVpcCommand({ CidrBlock: "10.9.0.0/16" }))).Vpc!.VpcId!;
      const otherSubnet = (await sim.ec2.send(new CreateSubnetCommand({ VpcId: otherVpc, CidrBlock: "10.9.1.0/24", AvailabilityZone: "us-east-1a" }))).Subnet!.SubnetId!;
      const otherEip = (await sim.ec2.send(new AllocateAddressCommand({ Domain: "vpc" }))).AllocationId!;
      const foreignNat = (await sim.ec2.send(new CreateNatGatewayCommand({ SubnetId: otherSubnet, AllocationId: otherEip }))).NatGateway!.NatGatewayId!;

      const cases: [string, Record<string, unknown>, RegExp][] = [
        ["unknown-eip", { eip: "eipalloc-0123456789abcdef0" }, /unknown-eip\.yaml:\d+: routes\[0\]\.eip: Elastic IP eipalloc-0123456789abcdef0 does not exist/],
        ["eip-outside", { eip: taken }, new RegExp(`eip-outside\\.yaml:\\d+: routes\\[0\\]\\.eip: Elastic IP ${taken} .*is associated with ${outsider.InstanceId}, which is not in cluster fallback \\(its tag routeleader:cluster is missing\\)`)],
        ["nat-other-vpc", { fallback: { natGateway: foreignNat } }, new RegExp(`nat-other-vpc\\.yaml:\\d+: routes\\[0\\]\\.fallback\\.natGateway: NAT gateway ${foreignNat} is in ${otherVpc}, not in this instance's VPC ${sim.vpcId}`)],
        ["fallback-too-soon", { fallback: { natGateway }, fallbackAfter: "5s" }, /fallback-too-soon\.yaml:\d+: routes\[0\]\.fallbackAfter: fallbackAfter \(5s\) is shorter than the failover bound \(\d+ms = max\(election\.livenessTtl, election\.sessionTtl\) \+ election\.lockDelay \+ aws\.writeTimeout\)/],
      ];
      for (const [name, over, message] of cases) {
        const result = await runCli(["validate", "--aws", "--config", write(name, over)]);
        expect(result.output, name).toMatch(message);
        expect(result.code, name).toBe(3);
      }
      // The cluster's own configuration passes, with its checks made against AWS.
      const good = await runCli(["validate", "--aws", "--config", write("good", { fallback: { natGateway }, fallbackAfter: "12s" })]);
      expect(good.output).toMatch(/Elastic IPs and fallbacks of 1 route checked against AWS/);
      expect(good.code).toBe(0);
      // Reads only: nothing the validator sent through the proxy could change anything.
      expect(sim.proxy!.calls({ caller: "validate" }).length).toBeGreaterThan(0);
      expect(sim.proxy!.calls({ caller: "validate", mutating: true })).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
