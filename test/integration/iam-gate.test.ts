import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DescribeInstanceAttributeCommand, EC2Client, ModifyInstanceAttributeCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { startAemm, type StartedAemm } from "../support/aemm.js";
import { spawnCli } from "../support/agent-cli.js";
import { evaluateConditions, loadTemplate, resolve } from "../support/cfn.js";
import { startConsulDev, type StartedConsul } from "../support/consul.js";
import { createSubnet, createTable, createVpc, identityOf, readRoute, runInstance } from "../support/ec2-world.js";
import { startFaultProxy, type StartedFaultProxy } from "../support/fault-proxy.js";
import { allows, type PolicyDocument, type Request } from "../support/iam.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { freePort } from "../support/ports.js";
import { waitUntil, type ManagedProcess } from "../support/process.js";

/**
 * Point 7 of issue #15, end to end: the NAT role's own policy document (routeleader-nat.yaml, as
 * CloudFormation resolves it for this stack) enforced on every AWS call a running agent makes.
 * moto's own IAM enforcement cannot do this (it authorises EC2 actions against resource "*" and
 * supplies no condition keys, so every scoped statement is denied there: docs/deploy.md "How it
 * is tested"), so an IAM gate in the fault proxy in front of moto evaluates each call with the
 * repository's policy evaluator, with the resource ARN and the request context AWS would supply
 * (ec2:Vpc, the table's tags, the instance's Auto Scaling group), and answers
 * UnauthorizedOperation (403) to what the policy does not allow, unforwarded. The agent runs as
 * bootstrap.sh configures it on a NAT node (discovery by tag, source/dest check fix, the lifecycle
 * hook), with one route on a table tagged for its cluster and one on an untagged table of the
 * same VPC.
 */

const CLUSTER = "iam-gate";
const STACK = "rl-iam";
const ACCOUNT = "123456789012"; // moto's
const REGION = EMULATOR_AWS.region;
const UNAUTHORIZED = { status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation." };
const ROUTE_WRITES = ["CreateRoute", "ReplaceRoute", "DeleteRoute"];

let moto: StartedMoto;
let proxy: StartedFaultProxy;
let admin: EC2Client;
let consul: StartedConsul;
let aemm: StartedAemm;
let dir: string;
let agent: ManagedProcess | undefined;
const world = {} as { vpcId: string; tagged: string; untagged: string; self: string };

/** The NAT role's policy of routeleader-nat.yaml for this stack, intrinsics resolved. */
function natRolePolicy(vpcId: string): PolicyDocument {
  const template = loadTemplate("routeleader-nat.yaml");
  const params = {
    "AWS::StackName": STACK,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    ClusterName: CLUSTER,
    VpcId: vpcId,
    VpcCidr: "10.61.0.0/16",
    PublicSubnetA: "subnet-0a",
    PublicSubnetB: "subnet-0b",
    ConsulGossipKeyParameter: "/rl/gossip",
    ConsulCaParameter: "/rl/ca",
    ConsulCaKeyParameter: "/rl/ca-key",
    ConsulManagementTokenParameter: "/rl/management-token",
    ArtifactBucket: "rl-artifacts",
    ArtifactKey: "releases/routeleader.tar.gz",
    ArtifactSha256: "a".repeat(64),
    ConsulBinaryUrl: "s3://rl-artifacts/mirror/consul.zip",
    ConsulBinarySha256: "b".repeat(64),
  };
  const role = resolve(template.Resources.NatRole, evaluateConditions(template, params)) as { Properties: { Policies: { PolicyDocument: PolicyDocument }[] } };
  expect(role.Properties.Policies).toHaveLength(1);
  return role.Properties.Policies[0]!.PolicyDocument;
}

/**
 * An EC2 or Auto Scaling query-protocol call as IAM sees it. The context is what AWS supplies
 * for these resources in this world: each table's VPC and tags, and the group an Auto Scaling
 * group would have tagged the instance with (moto runs it outside any group).
 */
function requestOf(params: Readonly<Record<string, string>>, tables: Map<string, Record<string, string>>, groups: Map<string, string>): Request {
  const service = params.Version === "2011-01-01" ? "autoscaling" : "ec2";
  const action = `${service}:${params.Action ?? "(none)"}`;
  if (service === "ec2" && ROUTE_WRITES.includes(params.Action ?? "") && params.RouteTableId) {
    const tags = tables.get(params.RouteTableId) ?? {};
    const context: Record<string, string> = { "ec2:Vpc": `arn:aws:ec2:${REGION}:${ACCOUNT}:vpc/${world.vpcId}` };
    for (const [k, v] of Object.entries(tags)) context[`aws:ResourceTag/${k}`] = v;
    return { action, resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:route-table/${params.RouteTableId}`, context };
  }
  if (service === "ec2" && params.Action === "ModifyInstanceAttribute" && params.InstanceId) {
    const group = groups.get(params.InstanceId);
    return { action, resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/${params.InstanceId}`, context: group ? { "aws:ResourceTag/aws:autoscaling:groupName": group } : {} };
  }
  if (service === "autoscaling" && params.AutoScalingGroupName) {
    return { action, resource: `arn:aws:autoscaling:${REGION}:${ACCOUNT}:autoScalingGroup:6d4b1bb4-1b1c-4f5a-9c0e-2f8f5b0c1d2e:autoScalingGroupName/${params.AutoScalingGroupName}` };
  }
  return { action, resource: "*" };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rl-iam-gate-"));
  moto = await startMoto();
  proxy = await startFaultProxy({ upstream: moto.endpoint });
  admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  const { vpcId } = await createVpc(admin, "10.61.0.0/16");
  const subnet = await createSubnet(admin, vpcId, "10.61.1.0/24");
  const privateA = await createSubnet(admin, vpcId, "10.61.2.0/24");
  const privateB = await createSubnet(admin, vpcId, "10.61.3.0/24");
  const taggedTags = { "routeleader:cluster": CLUSTER, Name: "private-a" };
  const tagged = await createTable(admin, vpcId, { tags: taggedTags, subnets: [privateA] });
  const untagged = await createTable(admin, vpcId, { tags: { Name: "private-b" }, subnets: [privateB] });
  const instance = await runInstance(admin, subnet, { "routeleader:cluster": CLUSTER });
  Object.assign(world, { vpcId, tagged, untagged, self: instance.InstanceId! });
  await admin.send(new ModifyInstanceAttributeCommand({ InstanceId: world.self, SourceDestCheck: { Value: true } }));

  const policy = natRolePolicy(vpcId);
  const tables = new Map<string, Record<string, string>>([
    [tagged, taggedTags],
    [untagged, { Name: "private-b" }],
  ]);
  const groups = new Map([[world.self, `${STACK}-nat-a`]]);
  proxy.failDuring(Number.POSITIVE_INFINITY, { match: (params) => !allows(policy, requestOf(params, tables, groups)), error: UNAUTHORIZED, label: "iam-denied" });

  [consul, aemm] = await Promise.all([startConsulDev("iam-gate"), startAemm(identityOf(instance), { imdsv2Only: true })]);
}, 180_000);

afterAll(async () => {
  await agent?.stop(15_000);
  await aemm?.stop();
  await consul?.stop();
  admin?.destroy();
  await proxy?.stop();
  await moto?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe("ship: the NAT role's own policy enforced on every AWS call of a running agent (IAM gate in front of moto)", () => {
  it("ship: every call the agent makes is allowed (it disables its source/dest check and points the tagged table at itself); a write to an untagged table in the same VPC is denied and the agent says so", async () => {
    const file = join(dir, "routeleader.yaml");
    // What bootstrap.sh writes on a NAT node, with this world's endpoints and without the data-plane checks.
    writeFileSync(
      file,
      stringify({
        cluster: CLUSTER,
        region: REGION,
        consul: { address: consul.httpAddr },
        imds: { endpoint: aemm.endpoint },
        aws: { endpoint: proxy.endpointFor("nat") },
        election: { profile: "default" },
        discovery: { tags: { "routeleader:cluster": CLUSTER } },
        sourceDestCheck: "fix",
        http: { listen: `127.0.0.1:${await freePort()}` },
        routes: [
          { name: "nat-tagged", table: { id: world.tagged }, destination: "0.0.0.0/0" },
          { name: "nat-untagged", table: { id: world.untagged }, destination: "0.0.0.0/0" },
        ],
        lifecycle: { hookName: "routeleader-release" },
      }),
    );
    agent = spawnCli(["run", "--config", file], { name: "routeleader (IAM gate)" });
    const route = await waitUntil("0.0.0.0/0 of the tagged table at this instance", async () => {
      if (agent!.hasExited) throw new Error(`the agent exited:\n${agent!.output(40)}`);
      const r = await readRoute(admin, world.tagged, "0.0.0.0/0");
      return r?.InstanceId === world.self ? r : undefined;
    }, { timeoutMs: 90_000, intervalMs: 500 });
    expect(route.InstanceId).toBe(world.self);
    await waitUntil("the agent blocked on the untagged table", async () => (agent!.output(2000).includes("missing IAM permission ec2:CreateRoute") ? true : undefined), { timeoutMs: 90_000, intervalMs: 500 });
    expect((await admin.send(new DescribeInstanceAttributeCommand({ InstanceId: world.self, Attribute: "sourceDestCheck" }))).SourceDestCheck?.Value).toBe(false);
    expect(await readRoute(admin, world.untagged, "0.0.0.0/0")).toBeUndefined();

    const calls = proxy.calls({ caller: "nat" });
    const denied = calls.filter((c) => c.injected === "iam-denied");
    expect(denied.length).toBeGreaterThan(0);
    // Denied: route writes on the untagged table (DryRun probes included), nothing else.
    expect(denied.filter((c) => !(ROUTE_WRITES.includes(c.action) && c.params.RouteTableId === world.untagged)).map((c) => `${c.service}:${c.action}`)).toEqual([]);
    // Allowed, and made: the reads, the source/dest check, the tagged table's write.
    const allowed = [...new Set(calls.filter((c) => c.injected !== "iam-denied").map((c) => `${c.service}:${c.action}`))].sort();
    expect(allowed).toEqual(expect.arrayContaining(["ec2:DescribeInstances", "ec2:DescribeRouteTables", "ec2:ModifyInstanceAttribute", "ec2:CreateRoute"]));
    expect(calls.filter((c) => ROUTE_WRITES.includes(c.action) && c.params.RouteTableId === world.tagged && c.injected !== "dry-run").every((c) => c.status === 200)).toBe(true);
    console.log(`IAM gate: allowed ${allowed.join(", ")}; denied ${[...new Set(denied.map((c) => `${c.action} ${c.params.RouteTableId}${c.params.DryRun === "true" ? " (DryRun)" : ""}`))].join(", ")}`);
  }, 240_000);
});
