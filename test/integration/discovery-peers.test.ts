import { CreateAutoScalingGroupCommand, DescribeAutoScalingGroupsCommand, AutoScalingClient } from "@aws-sdk/client-auto-scaling";
import { CreateLaunchTemplateCommand, DescribeInstancesCommand, EC2Client, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEc2Client } from "../../agent/aws/index.js";
import { ConsulApi, ConsulConnection } from "../../agent/consul/index.js";
import { PeerDiscovery, type PeerInstance } from "../../agent/discovery/index.js";
import { AMI, createSubnet, createVpc, identityOf, memoryLogger, runInstance } from "../support/ec2-world.js";
import { startConsul, startConsulCluster, type ConsulCluster, type StartedConsul } from "../support/consul.js";
import { startFaultProxy, type StartedFaultProxy } from "../support/fault-proxy.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { waitUntil } from "../support/process.js";

const GROUP = "nat-asg";

interface RawMember {
  Name: string;
  Status: number;
}

describe("peer discovery: EC2 → Consul join (moto + real Consul)", () => {
  let moto: StartedMoto;
  let proxy: StartedFaultProxy;
  let cluster: ConsulCluster | undefined;
  const loose: StartedConsul[] = [];
  let admin: EC2Client;
  let autoscaling: AutoScalingClient;
  let ec2: EC2Client;
  let conn: ConsulConnection | undefined;

  beforeAll(async () => {
    moto = await startMoto();
    proxy = await startFaultProxy({ upstream: moto.endpoint });
    admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
    autoscaling = new AutoScalingClient({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
    ec2 = createEc2Client({ region: EMULATOR_AWS.region, endpoint: proxy.endpointFor("self"), credentials: EMULATOR_AWS.credentials });
    cluster = await startConsulCluster({ clients: [], prefix: "srv" });
  });
  afterAll(async () => {
    conn?.close();
    ec2?.destroy();
    admin?.destroy();
    autoscaling?.destroy();
    await Promise.all(loose.map((a) => a.stop()));
    await cluster?.stop();
    await proxy?.stop();
    await moto?.stop();
  });

  async function groupMembers(): Promise<string[]> {
    const out = await autoscaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [GROUP] }));
    return (out.AutoScalingGroups?.[0]?.Instances ?? []).map((i) => i.InstanceId!).sort();
  }

  it("joins exactly the running peers of its group and VPC, and force-leaves a terminated one", async () => {
    const { vpcId } = await createVpc(admin, "10.5.0.0/16");
    const subnet = await createSubnet(admin, vpcId, "10.5.1.0/24");
    const other = await createVpc(admin, "10.6.0.0/16");
    const otherSubnet = await createSubnet(admin, other.vpcId, "10.6.1.0/24");
    await admin.send(new CreateLaunchTemplateCommand({ LaunchTemplateName: "nat", LaunchTemplateData: { ImageId: AMI } }));
    await autoscaling.send(new CreateAutoScalingGroupCommand({ AutoScalingGroupName: GROUP, LaunchTemplate: { LaunchTemplateName: "nat" }, MinSize: 3, MaxSize: 3, DesiredCapacity: 3, VPCZoneIdentifier: subnet }));
    const [selfId, peer1, peer2] = await groupMembers();
    // Decoys: the same group tag in another VPC, and another group in this VPC.
    const otherVpcTwin = (await runInstance(admin, otherSubnet, { "aws:autoscaling:groupName": GROUP })).InstanceId!;
    const otherGroup = (await runInstance(admin, subnet, { "aws:autoscaling:groupName": "web-asg" })).InstanceId!;
    const instances = new Map((await admin.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances!).map((i) => [i.InstanceId!, i]));

    // One Consul client agent per simulated instance. Only this instance's agent knows the servers.
    const self = await cluster!.addClient(selfId!);
    const agents = new Map<string, StartedConsul>([[selfId!, self]]);
    for (const id of [peer1!, peer2!, otherVpcTwin, otherGroup]) {
      const agent = await startConsul({ mode: "client", node: id });
      loose.push(agent);
      agents.set(id, agent);
    }
    conn = new ConsulConnection({ address: self.httpAddr });
    const { log } = memoryLogger();
    const discovery = new PeerDiscovery({
      ec2,
      consul: new ConsulApi(conn),
      identity: identityOf(instances.get(selfId!)!),
      config: { discovery: { interval: 1000 } },
      log,
      // Instances' private IPs are not reachable here: join each at its agent's loopback serf port.
      joinAddress: (peer: PeerInstance) => agents.get(peer.instanceId)?.serfLanAddr,
    });

    const first = await discovery.runOnce();
    expect(first.peers.map((p) => p.instanceId).sort()).toEqual([peer1, peer2].sort());
    expect([...first.joined].sort()).toEqual([peer1, peer2].sort());
    expect(first.forceLeft).toEqual([]);
    const describes = proxy.calls({ caller: "self", action: "DescribeInstances" }).map((c) => c.params);
    expect(describes.some((p) => Object.values(p).includes("instance-state-name") && Object.values(p).includes("running") && Object.values(p).includes(vpcId))).toBe(true);

    const alive = await waitUntil(
      "peers alive in the Consul member list",
      async () => {
        const members = await self.get<RawMember[]>("/v1/agent/members");
        const names = members.filter((m) => m.Status === 1).map((m) => m.Name);
        return [peer1!, peer2!].every((p) => names.includes(p)) ? names : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(alive).not.toContain(otherVpcTwin);
    expect(alive).not.toContain(otherGroup);

    // peer2 dies: its agent is killed and EC2 terminates it; the ASG launches a replacement.
    await agents.get(peer2!)!.kill();
    await admin.send(new TerminateInstancesCommand({ InstanceIds: [peer2!] }));
    await waitUntil(
      `${peer2} seen failed by Consul`,
      async () => ((await self.get<RawMember[]>("/v1/agent/members")).find((m) => m.Name === peer2)?.Status === 4 ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    const replacement = (await groupMembers()).filter((id) => ![selfId, peer1, peer2].includes(id));
    expect(replacement).toHaveLength(1);

    const second = await discovery.runOnce();
    expect(second.peers.map((p) => p.instanceId).sort()).toEqual([peer1!, replacement[0]!].sort());
    expect(second.forceLeft).toEqual([peer2]);
    await waitUntil(
      `${peer2} left after force-leave`,
      async () => {
        const member = (await self.get<RawMember[]>("/v1/agent/members")).find((m) => m.Name === peer2);
        return member === undefined || member.Status === 3 ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(proxy.mutatingCalls("self")).toEqual([]);
  });

  it("the periodic loop runs until its signal aborts", async () => {
    const { log, lines } = memoryLogger();
    const instance = (await admin.send(new DescribeInstancesCommand({ Filters: [{ Name: "tag:aws:autoscaling:groupName", Values: [GROUP] }, { Name: "instance-state-name", Values: ["running"] }] }))).Reservations!.flatMap((r) => r.Instances!)[0]!;
    const discovery = new PeerDiscovery({ ec2, consul: new ConsulApi(conn!), identity: identityOf(instance), config: { discovery: { interval: 1000 } }, log, joinAddress: () => undefined });
    const stop = new AbortController();
    const running = discovery.run(stop.signal);
    await waitUntil("two discovery rounds", async () => (lines.filter((l) => l.msg === "peer discovery").length >= 2 ? true : undefined), { timeoutMs: 10_000 });
    stop.abort();
    await running;
    const rounds = lines.filter((l) => l.msg === "peer discovery").length;
    expect(rounds).toBeGreaterThanOrEqual(2);
  });
});
