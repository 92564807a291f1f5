import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AllocateAddressCommand,
  CreateNatGatewayCommand,
  CreateNetworkInterfaceCommand,
  CreateRouteCommand,
  CreateTagsCommand,
  EC2Client,
  ReplaceRouteCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createWatchdog, type WatchdogEvent } from "../../agent/watchdog/handler.js";
import { settingsFromEnv } from "../../agent/watchdog/settings.js";
import { createSubnet, createTable, createVpc, readRoute, runInstance } from "../support/ec2-world.js";
import { startFaultProxy, type StartedFaultProxy } from "../support/fault-proxy.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";

/**
 * The watchdog's handler, invoked with recorded EventBridge events (test/fixtures/eventbridge/)
 * against moto behind the fault proxy, which reports routes to stopped or terminated instances
 * as blackhole, as EC2 does. Only the Lambda runtime itself is not involved: the handler is
 * called as the runtime calls it, with the event object.
 */

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "eventbridge");
function fixture(name: string, instanceId?: string): WatchdogEvent {
  const text = readFileSync(join(FIXTURES, name), "utf8");
  return JSON.parse(instanceId ? text.replaceAll("i-0123456789abcdef0", instanceId) : text) as WatchdogEvent;
}

describe("watchdog against moto", () => {
  let moto: StartedMoto;
  let proxy: StartedFaultProxy;
  let admin: EC2Client;
  let ec2: EC2Client;
  let events: EventBridgeClient;

  beforeAll(async () => {
    moto = await startMoto();
    proxy = await startFaultProxy({ upstream: moto.endpoint });
    admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
    ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: proxy.endpointFor("watchdog"), maxAttempts: 1 });
    events = new EventBridgeClient({ ...EMULATOR_AWS, endpoint: proxy.endpointFor("watchdog"), maxAttempts: 1 });
  });
  afterAll(async () => {
    admin?.destroy();
    ec2?.destroy();
    events?.destroy();
    await proxy?.stop();
    await moto?.stop();
  });

  interface World {
    vpcId: string;
    managed: string[];
    unmanaged: string;
    nat: string;
    eni: string;
    subnet: string;
  }
  let world: World;

  beforeEach(async () => {
    await moto.reset();
    proxy.reset();
    const { vpcId } = await createVpc(admin, "10.40.0.0/16");
    const subnet = await createSubnet(admin, vpcId, "10.40.1.0/24");
    const managed = [await createTable(admin, vpcId, { tags: { "routeleader/managed": "wd" } }), await createTable(admin, vpcId, { tags: { "routeleader/managed": "wd" } }), await createTable(admin, vpcId, { tags: { "routeleader/managed": "wd" } })];
    const unmanaged = await createTable(admin, vpcId, { tags: { tier: "private" } });
    const eip = await admin.send(new AllocateAddressCommand({ Domain: "vpc" }));
    const nat = (await admin.send(new CreateNatGatewayCommand({ SubnetId: subnet, AllocationId: eip.AllocationId }))).NatGateway!.NatGatewayId!;
    const eni = (await admin.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet, Description: "standby NAT appliance" }))).NetworkInterface!.NetworkInterfaceId!;
    world = { vpcId, managed, unmanaged, nat, eni, subnet };
  });

  function watchdog(env: Record<string, string> = {}) {
    const lines: Record<string, unknown>[] = [];
    const settings = settingsFromEnv({ ROUTELEADER_CLUSTER: "wd", ROUTELEADER_VPC_ID: world.vpcId, ROUTELEADER_TABLE_TAG: "routeleader/managed=wd", ROUTELEADER_FALLBACKS: `*=${world.nat}`, ROUTELEADER_GRACE_SECONDS: "0", ...env });
    const sleeps: number[] = [];
    let duringSleep: (() => Promise<void>) | undefined;
    const handle = createWatchdog({
      settings,
      ec2,
      events,
      write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
      sleep: async (ms) => {
        sleeps.push(ms);
        await duringSleep?.();
      },
    });
    return { handle, lines, sleeps, setDuringSleep: (f: () => Promise<void>) => (duringSleep = f) };
  }

  async function routeTo(table: string, instanceId: string): Promise<void> {
    await admin.send(new CreateRouteCommand({ RouteTableId: table, DestinationCidrBlock: "0.0.0.0/0", InstanceId: instanceId }));
  }

  const replaceRoutes = () => proxy.calls({ caller: "watchdog", action: "ReplaceRoute" });
  const putEvents = () => proxy.calls({ caller: "watchdog", action: "PutEvents" });
  const emf = (lines: Record<string, unknown>[], metric: string) => lines.filter((l) => l._aws && metric in l);

  it("egress: a state-change event for a stopped holder repoints its route at the fallback NAT gateway, with a metric and an EventBridge event", async () => {
    const holder = await runInstance(admin, world.subnet);
    await routeTo(world.managed[0]!, holder.InstanceId!);
    await admin.send(new StopInstancesCommand({ InstanceIds: [holder.InstanceId!] }));

    const w = watchdog();
    const result = await w.handle(fixture("ec2-instance-state-change-stopped.json", holder.InstanceId!));

    expect(result.trigger).toBe(`instance ${holder.InstanceId} stopped`);
    expect(result.moved).toBe(1);
    const route = await readRoute(admin, world.managed[0]!, "0.0.0.0/0");
    expect(route?.NatGatewayId).toBe(world.nat);
    expect(route?.InstanceId).toBeUndefined();
    expect(replaceRoutes().map((c) => c.params)).toEqual([expect.objectContaining({ RouteTableId: world.managed[0], DestinationCidrBlock: "0.0.0.0/0", NatGatewayId: world.nat })]);
    // One EventBridge event for the move, accepted by moto's EventBridge.
    expect(putEvents()).toHaveLength(1);
    expect(putEvents()[0]!.status).toBe(200);
    const entry = (putEvents()[0]!.json as { Entries: { Source: string; DetailType: string; Detail: string; EventBusName: string }[] }).Entries[0]!;
    expect(entry).toMatchObject({ Source: "routeleader.watchdog", DetailType: "routeleader route moved", EventBusName: "default" });
    expect(JSON.parse(entry.Detail)).toMatchObject({ cluster: "wd", actor: "watchdog", routeTable: world.managed[0], destination: "0.0.0.0/0", from: holder.InstanceId, fromState: "stopped", to: world.nat });
    // EMF: the move, and the invocation summary the "route on fallback" alarm watches.
    const moved = emf(w.lines, "WatchdogRouteMoved");
    expect(moved).toHaveLength(1);
    expect(moved[0]).toMatchObject({ Cluster: "wd", WatchdogRouteMoved: 1, _aws: { CloudWatchMetrics: [{ Namespace: "routeleader", Dimensions: [["Cluster"]] }] } });
    expect(emf(w.lines, "WatchdogRoutesOnFallback")[0]).toMatchObject({ WatchdogRoutesOnFallback: 1, WatchdogManagedRoutes: 3 });

    // A second invocation finds the route on its fallback and writes nothing.
    proxy.clearLog();
    const again = await w.handle(fixture("scheduled-event.json"));
    expect(again.moved).toBe(0);
    expect(replaceRoutes()).toHaveLength(0);
    expect(putEvents()).toHaveLength(0);
  });

  it("egress: a terminated holder's route reads blackhole and the schedule repoints it at the ENI named by the table's tag", async () => {
    const holder = await runInstance(admin, world.subnet);
    await routeTo(world.managed[1]!, holder.InstanceId!);
    await admin.send(new CreateTagsCommand({ Resources: [world.managed[1]!], Tags: [{ Key: "routeleader:fallback:0.0.0.0/0", Value: world.eni }] }));
    await admin.send(new TerminateInstancesCommand({ InstanceIds: [holder.InstanceId!] }));

    const w = watchdog();
    const result = await w.handle(fixture("scheduled-event.json"));

    const outcome = result.routes.find((r) => r.tableId === world.managed[1]);
    expect(outcome?.moved).toMatchObject({ from: holder.InstanceId, to: world.eni });
    const route = await readRoute(admin, world.managed[1]!, "0.0.0.0/0");
    expect(route?.NetworkInterfaceId).toBe(world.eni);
    // The proxy rewrote the route as EC2 reports it: blackhole at a terminated instance.
    expect(proxy.calls({ caller: "watchdog", action: "DescribeRouteTables" }).some((c) => c.injected === "rewritten")).toBe(true);
  });

  it("egress: a blackhole route at a terminated instance's network interface (no instance id on the route) is repointed", async () => {
    const holder = await runInstance(admin, world.subnet);
    const holderEni = holder.NetworkInterfaces![0]!.NetworkInterfaceId!;
    await admin.send(new CreateRouteCommand({ RouteTableId: world.managed[2]!, DestinationCidrBlock: "0.0.0.0/0", NetworkInterfaceId: holderEni }));
    await admin.send(new TerminateInstancesCommand({ InstanceIds: [holder.InstanceId!] }));
    // moto keeps the route "active"; the proxy makes it blackhole, as EC2 does.
    const w = watchdog({ ROUTELEADER_FALLBACKS: `${world.managed[2]}=${world.nat}` });
    const result = await w.handle(fixture("ec2-instance-state-change-terminated.json", holder.InstanceId!));
    expect(result.routes.find((r) => r.tableId === world.managed[2])?.decision).toMatchObject({ kind: "repoint", why: "blackhole", from: holderEni });
    expect((await readRoute(admin, world.managed[2]!, "0.0.0.0/0"))?.NatGatewayId).toBe(world.nat);
  });

  it("egress: a route at a running instance is left alone, even when a (late) event says that instance stopped", async () => {
    const holder = await runInstance(admin, world.subnet);
    await routeTo(world.managed[0]!, holder.InstanceId!);

    const w = watchdog();
    const stale = await w.handle(fixture("ec2-instance-state-change-stopped.json", holder.InstanceId!));
    const scheduled = await w.handle(fixture("scheduled-event.json"));

    for (const result of [stale, scheduled]) {
      expect(result.moved).toBe(0);
      expect(result.routes.find((r) => r.tableId === world.managed[0])?.decision).toMatchObject({ kind: "leave", reason: "target running" });
    }
    expect((await readRoute(admin, world.managed[0]!, "0.0.0.0/0"))?.InstanceId).toBe(holder.InstanceId);
    expect(proxy.mutatingCalls("watchdog")).toEqual([]);
  });

  it("egress: an agent that takes the route during the grace period wins; the watchdog writes nothing", async () => {
    const dead = await runInstance(admin, world.subnet);
    const peer = await runInstance(admin, world.subnet);
    await routeTo(world.managed[0]!, dead.InstanceId!);
    await admin.send(new StopInstancesCommand({ InstanceIds: [dead.InstanceId!] }));

    const w = watchdog({ ROUTELEADER_GRACE_SECONDS: "20" });
    // What a live peer's agent does after a failover: point the route at itself.
    w.setDuringSleep(async () => {
      await admin.send(new ReplaceRouteCommand({ RouteTableId: world.managed[0]!, DestinationCidrBlock: "0.0.0.0/0", InstanceId: peer.InstanceId! }));
    });
    const result = await w.handle(fixture("ec2-instance-state-change-stopped.json", dead.InstanceId!));

    expect(w.sleeps).toEqual([20_000]);
    expect(result.moved).toBe(0);
    expect((await readRoute(admin, world.managed[0]!, "0.0.0.0/0"))?.InstanceId).toBe(peer.InstanceId);
    expect(replaceRoutes()).toHaveLength(0);
  });

  it("egress: with a grace period a route still dead at the second read moves; one that died only since the first waits", async () => {
    const a = await runInstance(admin, world.subnet);
    const b = await runInstance(admin, world.subnet);
    await routeTo(world.managed[0]!, a.InstanceId!);
    await routeTo(world.managed[1]!, b.InstanceId!);
    await admin.send(new StopInstancesCommand({ InstanceIds: [a.InstanceId!] }));

    const w = watchdog({ ROUTELEADER_GRACE_SECONDS: "20" });
    w.setDuringSleep(async () => {
      await admin.send(new StopInstancesCommand({ InstanceIds: [b.InstanceId!] }));
    });
    const result = await w.handle(fixture("scheduled-event.json"));

    expect(result.moved).toBe(1);
    expect((await readRoute(admin, world.managed[0]!, "0.0.0.0/0"))?.NatGatewayId).toBe(world.nat);
    expect((await readRoute(admin, world.managed[1]!, "0.0.0.0/0"))?.InstanceId).toBe(b.InstanceId);
    expect(result.routes.find((r) => r.tableId === world.managed[1])?.decision).toMatchObject({ kind: "leave", reason: "dead for less than the grace period" });
  });

  it("egress: unmanaged tables are never touched, whatever their routes and tags say", async () => {
    const holder = await runInstance(admin, world.subnet);
    await routeTo(world.unmanaged, holder.InstanceId!);
    await admin.send(new CreateTagsCommand({ Resources: [world.unmanaged], Tags: [{ Key: "routeleader:fallback:0.0.0.0/0", Value: world.nat }] }));
    await admin.send(new StopInstancesCommand({ InstanceIds: [holder.InstanceId!] }));

    const selections: Record<string, string>[] = [{}, { ROUTELEADER_TABLE_TAG: "", ROUTELEADER_TABLE_IDS: world.managed.join(",") }];
    for (const env of selections) {
      const w = watchdog(env);
      const result = await w.handle(fixture("ec2-instance-state-change-stopped.json", holder.InstanceId!));
      expect(result.routes.map((r) => r.tableId).sort()).toEqual([...world.managed].sort());
    }
    expect((await readRoute(admin, world.unmanaged, "0.0.0.0/0"))?.InstanceId).toBe(holder.InstanceId);
    expect(proxy.mutatingCalls("watchdog")).toEqual([]);
  });

  it("egress: a dead route without a fallback is reported, not written", async () => {
    const holder = await runInstance(admin, world.subnet);
    await routeTo(world.managed[0]!, holder.InstanceId!);
    await admin.send(new TerminateInstancesCommand({ InstanceIds: [holder.InstanceId!] }));

    const w = watchdog({ ROUTELEADER_FALLBACKS: "" });
    const result = await w.handle(fixture("scheduled-event.json"));

    expect(result.moved).toBe(0);
    expect(result.routes.find((r) => r.tableId === world.managed[0])?.decision).toMatchObject({ kind: "leave", reason: "no fallback configured", deadTarget: true });
    expect(emf(w.lines, "WatchdogRoutesAtDeadTarget")[0]).toMatchObject({ WatchdogRoutesAtDeadTarget: 1, WatchdogRoutesOnFallback: 0 });
    expect(proxy.mutatingCalls("watchdog")).toEqual([]);
  });

  it("egress: the zip npm run build:watchdog makes for the stack runs the same handler under plain node, SDK bundled, settings from the environment", async () => {
    const holder = await runInstance(admin, world.subnet);
    await routeTo(world.managed[0]!, holder.InstanceId!);
    await admin.send(new TerminateInstancesCommand({ InstanceIds: [holder.InstanceId!] }));
    const dir = mkdtempSync(join(tmpdir(), "rl-watchdog-"));
    try {
      execFileSync(process.execPath, [join(import.meta.dirname, "..", "..", "scripts", "build-watchdog.mjs"), "--out", dir], { stdio: "pipe" });
      execFileSync("python3", ["-m", "zipfile", "-e", join(dir, `routeleader-watchdog-${(JSON.parse(readFileSync(join(import.meta.dirname, "..", "..", "package.json"), "utf8")) as { version: string }).version}.zip`), join(dir, "fn")]);
      const event = JSON.stringify(fixture("ec2-instance-state-change-terminated.json", holder.InstanceId!));
      const script = `require(${JSON.stringify(join(dir, "fn", "index.js"))}).handler(${event}).then((r) => process.stderr.write("RESULT " + JSON.stringify(r) + "\\n"))`;
      const env = {
        PATH: process.env.PATH ?? "",
        AWS_REGION: EMULATOR_AWS.region,
        AWS_ACCESS_KEY_ID: "testing",
        AWS_SECRET_ACCESS_KEY: "testing",
        AWS_ENDPOINT_URL: proxy.endpointFor("bundle"),
        ROUTELEADER_CLUSTER: "wd",
        ROUTELEADER_VPC_ID: world.vpcId,
        ROUTELEADER_TABLE_IDS: world.managed.join(","),
        ROUTELEADER_FALLBACKS: `*=${world.nat}`,
        ROUTELEADER_GRACE_SECONDS: "1",
      };
      const run = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
        const child = execFile(process.execPath, ["-e", script], { cwd: dir, env, timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve({ stdout, stderr })));
        child.stdin?.end();
      });
      const result = JSON.parse(/RESULT (.*)/.exec(run.stderr)![1]!) as { moved: number };
      expect(result.moved).toBe(1);
      expect((await readRoute(admin, world.managed[0]!, "0.0.0.0/0"))?.NatGatewayId).toBe(world.nat);
      // Lambda keeps unprefixed stdout lines as they are: every EMF line is one JSON document.
      const docs = run.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(docs.some((d) => d._aws && d.WatchdogRouteMoved === 1)).toBe(true);
      expect(proxy.calls({ caller: "bundle", action: "ReplaceRoute" })).toHaveLength(1);
      expect(proxy.calls({ caller: "bundle", action: "PutEvents" })).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
