import { AutoScalingClient, CompleteLifecycleActionCommand, DescribeAutoScalingGroupsCommand } from "@aws-sdk/client-auto-scaling";
import { CreateRouteCommand, DescribeRouteTablesCommand, DescribeVpcsCommand, EC2Client, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createSubnet, createTable, createVpc, identityOf, runInstance } from "../support/ec2-world.js";
import { startFaultProxy, type StartedFaultProxy } from "../support/fault-proxy.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";

describe("fault-injection proxy in front of moto", () => {
  let moto: StartedMoto;
  let proxy: StartedFaultProxy;
  let admin: EC2Client;
  let viaProxy: EC2Client;
  let autoscaling: AutoScalingClient;

  beforeAll(async () => {
    moto = await startMoto();
    proxy = await startFaultProxy({ upstream: moto.endpoint });
    admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
    viaProxy = new EC2Client({ ...EMULATOR_AWS, endpoint: proxy.endpointFor("tester"), maxAttempts: 1 });
    autoscaling = new AutoScalingClient({ ...EMULATOR_AWS, endpoint: proxy.endpointFor("hook"), maxAttempts: 1 });
  });
  afterAll(async () => {
    autoscaling?.destroy();
    viaProxy?.destroy();
    admin?.destroy();
    await proxy?.stop();
    await moto?.stop();
  });
  beforeEach(async () => {
    await moto.reset();
    proxy.reset();
  });

  it("logs every call with its caller, and marks the mutating ones", async () => {
    const { vpcId } = await createVpc(viaProxy, "10.7.0.0/16");
    await viaProxy.send(new DescribeVpcsCommand({ VpcIds: [vpcId] }));
    expect(proxy.calls().map((c) => `${c.caller} ${c.service} ${c.action} ${c.mutating} ${c.status}`)).toEqual(["tester ec2 CreateVpc true 200", "tester ec2 DescribeVpcs false 200"]);
    expect(proxy.mutatingCalls("tester")[0]?.params.CidrBlock).toBe("10.7.0.0/16");
  });

  it("AWS-like latency: every Describe is held about 100 ms, and clearFaults keeps it (issue #16)", async () => {
    proxy.setLatency({ "Describe*": [100, 120] });
    proxy.clearFaults();
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await viaProxy.send(new DescribeVpcsCommand({}));
      expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    }
  });

  it("answers CompleteLifecycleAction (moto: 500) and records it; Auto Scaling errors use the query error shape", async () => {
    await autoscaling.send(new CompleteLifecycleActionCommand({ AutoScalingGroupName: "nat", LifecycleHookName: "drain", LifecycleActionResult: "CONTINUE", InstanceId: "i-0123456789abcdef0" }));
    expect(proxy.completedLifecycleActions()).toEqual([expect.objectContaining({ AutoScalingGroupName: "nat", LifecycleHookName: "drain", LifecycleActionResult: "CONTINUE", InstanceId: "i-0123456789abcdef0" })]);
    proxy.failWith("DescribeAutoScalingGroups", 1, { status: 400, code: "Throttling", message: "Rate exceeded" });
    await expect(autoscaling.send(new DescribeAutoScalingGroupsCommand({}))).rejects.toMatchObject({ name: "Throttling", message: "Rate exceeded" });
    expect((await autoscaling.send(new DescribeAutoScalingGroupsCommand({}))).AutoScalingGroups).toEqual([]);
  });

  it("reports routes to stopped or terminated targets as blackhole, by instance or ENI, and can fill both ids as AWS does", async () => {
    const { vpcId } = await createVpc(admin, "10.8.0.0/16");
    const subnet = await createSubnet(admin, vpcId, "10.8.1.0/24");
    const live = await runInstance(admin, subnet);
    const dead = await runInstance(admin, subnet);
    const table = await createTable(admin, vpcId);
    await admin.send(new CreateRouteCommand({ RouteTableId: table, DestinationCidrBlock: "0.0.0.0/0", InstanceId: live.InstanceId }));
    await admin.send(new CreateRouteCommand({ RouteTableId: table, DestinationCidrBlock: "192.0.2.0/24", NetworkInterfaceId: identityOf(dead).eniId }));
    await admin.send(new TerminateInstancesCommand({ InstanceIds: [dead.InstanceId!] }));
    const read = async () => (await viaProxy.send(new DescribeRouteTablesCommand({ RouteTableIds: [table] }))).RouteTables![0]!.Routes!;
    const routes = await read();
    expect(routes.find((r) => r.DestinationCidrBlock === "0.0.0.0/0")?.State).toBe("active");
    expect(routes.find((r) => r.DestinationCidrBlock === "192.0.2.0/24")?.State).toBe("blackhole");
    expect((await admin.send(new DescribeRouteTablesCommand({ RouteTableIds: [table] }))).RouteTables![0]!.Routes!.every((r) => r.State === "active")).toBe(true);

    proxy.setFillRouteTargets(true);
    const filled = await read();
    expect(filled.find((r) => r.DestinationCidrBlock === "0.0.0.0/0")).toMatchObject({ InstanceId: live.InstanceId, NetworkInterfaceId: identityOf(live).eniId });
    expect(filled.find((r) => r.DestinationCidrBlock === "192.0.2.0/24")).toMatchObject({ InstanceId: dead.InstanceId, NetworkInterfaceId: identityOf(dead).eniId, State: "blackhole" });
  });
});
