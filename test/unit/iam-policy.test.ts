import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { evaluateConditions, loadTemplate, REPO, resolve } from "../support/cfn.js";
import { allows, globMatch, scanSdkCalls, scanSdkCallsInTree, type PolicyDocument, type Request, type Statement } from "../support/iam.js";

/**
 * The NAT instance role in cloudformation/routeleader-nat.yaml, held against the AWS calls the
 * agent really makes (scanned from agent/ at test time, so new code is checked as it lands).
 */

/** Calls the agent must be able to make even before its code for them lands. */
const MINIMUM = [
  "ec2:DescribeInstances",
  "ec2:DescribeRouteTables",
  "ec2:CreateRoute",
  "ec2:ReplaceRoute",
  "ec2:DeleteRoute",
  "ec2:ModifyInstanceAttribute",
  "autoscaling:CompleteLifecycleAction",
];

/** Actions in the role that the agent does not call, each with the reason it is there. */
const NOT_FROM_AGENT: Record<string, string> = {
  "ec2:DescribeInstances": "Consul's retry_join provider=aws finds the servers by EC2 tag",
  "ssm:GetParameter": "bootstrap.sh reads the gossip key and ACL token (SecureString), only those two parameters",
  "s3:GetObject": "the user data downloads the release artifact, bootstrap.sh the Consul binary when it is on S3: those two objects only",
  "cloudformation:SignalResource": "the user data signals the launch result (healthy or the reason it is not) to this stack only",
  "autoscaling:SetInstanceHealth": "routeleader-unhealthy.service marks a crash-looping instance unhealthy, in this stack's NAT groups only",
  "ssm:UpdateInstanceInformation": "the SSM agent registers the instance, for Session Manager port forwarding to the Consul UI",
  "ssmmessages:CreateControlChannel": "Session Manager",
  "ssmmessages:CreateDataChannel": "Session Manager",
  "ssmmessages:OpenControlChannel": "Session Manager",
  "ssmmessages:OpenDataChannel": "Session Manager",
  "logs:CreateLogStream": "the CloudWatch agent ships the agent's EMF lines: its stream per instance, in this stack's agent log group only",
  "logs:PutLogEvents": "the CloudWatch agent ships the agent's EMF lines, into this stack's agent log group only",
  "logs:DescribeLogStreams": "the CloudWatch agent looks up its stream, in this stack's agent log group only",
};

/** Reads EC2/Auto Scaling cannot scope to a resource: "*" is the only possible Resource. */
const UNSCOPABLE = /^(ec2:Describe|autoscaling:Describe|ssmmessages:|ssm:UpdateInstanceInformation$)/;

const ACCOUNT = "123456789012";
const REGION = "eu-west-1";
const STACK = "prod-nat";
const VPC = "vpc-0123456789abcdef0";
const OTHER_VPC = "vpc-0fedcba9876543210";
const GOSSIP = "/routeleader/prod/gossip-key";
const TOKEN = "/routeleader/prod/acl-token";
const BUCKET = "rl-artifacts";
const ARTIFACT_KEY = "releases/routeleader-0.1.0-linux-arm64.tar.gz";
const CONSUL_KEY = "mirror/consul_1.16.1_linux_arm64.zip";

const PSEUDO = { "AWS::StackName": STACK, "AWS::Region": REGION, "AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com" };
const BASE_PARAMS = {
  ...PSEUDO,
  ClusterName: "prod-nat",
  VpcId: VPC,
  VpcCidr: "10.42.0.0/16",
  PublicSubnetA: "subnet-0a",
  PublicSubnetB: "subnet-0b",
  PublicSubnetC: "subnet-0c",
  PrivateRouteTableIds: "rtb-0a,rtb-0b,rtb-0c",
  ConsulGossipKeyParameter: GOSSIP,
  ConsulAclTokenParameter: TOKEN,
  ArtifactBucket: BUCKET,
  ArtifactKey: ARTIFACT_KEY,
  ArtifactSha256: "a".repeat(64),
  ConsulBinaryUrl: `s3://${BUCKET}/${CONSUL_KEY}`,
  ConsulBinarySha256: "b".repeat(64),
};

const template = loadTemplate("routeleader-nat.yaml");

function resolved(logical: string, params: Record<string, string>) {
  const ctx = evaluateConditions(template, params);
  return resolve(template.Resources[logical], ctx);
}

function rolePolicy(role: string, params: Record<string, string> = BASE_PARAMS): PolicyDocument {
  const r = resolved(role, params);
  expect(r.Properties.Policies).toHaveLength(1);
  expect(r.Properties.ManagedPolicyArns).toBeUndefined(); // no AWS-managed policy rides along
  return r.Properties.Policies[0].PolicyDocument as PolicyDocument;
}

const actionsOf = (p: PolicyDocument) => new Set(p.Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])));
const arn = {
  routeTable: (id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:route-table/${id}`,
  vpc: (id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:vpc/${id}`,
  instance: (id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/${id}`,
  group: (name: string) => `arn:aws:autoscaling:${REGION}:${ACCOUNT}:autoScalingGroup:6d4b1bb4-1b1c-4f5a-9c0e-2f8f5b0c1d2e:autoScalingGroupName/${name}`,
  parameter: (name: string) => `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${name}`,
  object: (bucket: string, key: string) => `arn:aws:s3:::${bucket}/${key}`,
  stack: (name: string) => `arn:aws:cloudformation:${REGION}:${ACCOUNT}:stack/${name}/5b3a0c10-0f0e-11f0-8a2e-0a1b2c3d4e5f`,
};
/** The same-AZ pair on (SameAzPair): the only stack that writes `sameAz` routes, so the only one whose agents assign a secondary IP. */
const SAME_AZ_PARAMS = { ...BASE_PARAMS, NodesPerAz: "2", SameAzPair: "A", SameAzPrivateIp: "10.42.0.200", SameAzEipAllocationId: "eipalloc-0a" };

/** A request the agent makes for its own resources, for each action it may call. */
function ownRequest(action: string): Request {
  if (UNSCOPABLE.test(action)) return { action, resource: "*" };
  switch (action) {
    case "ec2:CreateRoute":
    case "ec2:ReplaceRoute":
    case "ec2:DeleteRoute":
      return { action, resource: arn.routeTable("rtb-0a"), context: { "ec2:Vpc": arn.vpc(VPC), "aws:ResourceTag/routeleader:cluster": "prod-nat" } };
    case "ec2:ModifyInstanceAttribute":
      return { action, resource: arn.instance("i-0a"), context: { "aws:ResourceTag/aws:autoscaling:groupName": `${STACK}-nat-b` } };
    case "ec2:AssociateAddress":
      return { action, resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:elastic-ip/eipalloc-0a`, context: { "aws:ResourceTag/routeleader:cluster": String(BASE_PARAMS.ClusterName) } };
    case "ec2:AssignPrivateIpAddresses":
      return { action, resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:network-interface/eni-0a`, context: { "ec2:Vpc": arn.vpc(VPC) } };
    case "autoscaling:CompleteLifecycleAction":
    case "autoscaling:RecordLifecycleActionHeartbeat":
    case "autoscaling:SetInstanceHealth":
      return { action, resource: arn.group(`${STACK}-nat-a`) };
    case "s3:GetObject":
      return { action, resource: arn.object(BUCKET, ARTIFACT_KEY) };
    case "cloudformation:SignalResource":
      return { action, resource: arn.stack(STACK) };
    case "ssm:GetParameter":
      return { action, resource: arn.parameter(GOSSIP) };
    case "logs:CreateLogStream":
    case "logs:DescribeLogStreams":
      return { action, resource: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/routeleader/${STACK}/agents:*` };
    case "logs:PutLogEvents":
      return { action, resource: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/routeleader/${STACK}/agents:log-stream:i-0a` };
    case "events:PutEvents":
      return { action, resource: `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/default`, context: { "events:source": "routeleader.agent" } };
    default:
      throw new Error(`the agent calls ${action}: add its own-resource request here and its statement to the NAT role (scoped)`);
  }
}

// agent/watchdog/ is the watchdog Lambda, with a role of its own (checked below), not the agent.
const agentCalls = scanSdkCallsInTree(join(REPO, "agent")).filter((c) => !c.file.startsWith("watchdog/"));
const scanned = [...new Set(agentCalls.map((c) => c.action))].sort();
const required = [...new Set([...scanned, ...MINIMUM])].sort();

describe("the source scan finds the AWS calls", () => {
  it("recognises SDK v3 commands (aliases, type imports, multi-line imports) and nothing else", () => {
    const src = `
      import { Command } from "commander";
      import {
        CreateRouteCommand,
        ReplaceRouteCommand as Replace,
        type DescribeRouteTablesCommandOutput,
        EC2Client,
      } from "@aws-sdk/client-ec2";
      import { CompleteLifecycleActionCommand } from "@aws-sdk/client-auto-scaling";
      import { GetThingCommand } from "@aws-sdk/client-made-up";
      const program = new Command("routeleader");
      const client = new EC2Client({});
      await client.send(new CreateRouteCommand({}));
      await client.send(new Replace({}));
      await asg.send(new CompleteLifecycleActionCommand({}));
      await x.send(new GetThingCommand({}));
    `;
    expect(scanSdkCalls(src).map((c) => c.action)).toEqual(["ec2:CreateRoute", "ec2:ReplaceRoute", "autoscaling:CompleteLifecycleAction", "?@aws-sdk/client-made-up:GetThing"]);
  });

  it("every client package the agent uses has a known IAM prefix", () => {
    expect(agentCalls.filter((c) => c.action.startsWith("?"))).toEqual([]);
  });

  it("the agent source makes AWS calls today (a scan finding nothing would prove nothing)", () => {
    expect(scanned.length).toBeGreaterThan(0);
  });
});

describe("NAT instance role: every call the agent makes is allowed on its own resources", () => {
  // With every optional feature of the agent on: the same-AZ pair adds the secondary-IP call.
  const policy = rolePolicy("NatRole", SAME_AZ_PARAMS);

  it.each(required)("%s", (action) => {
    expect(allows(policy, ownRequest(action))).toBe(true);
  });

  it("Consul retry_join, the secrets and Session Manager are allowed too", () => {
    for (const action of Object.keys(NOT_FROM_AGENT)) expect(allows(policy, ownRequest(action)), action).toBe(true);
    expect(allows(policy, { action: "ssm:GetParameter", resource: arn.parameter(TOKEN) })).toBe(true);
  });
});

describe("NAT instance role: nothing broader than needed", () => {
  const policy = rolePolicy("NatRole");

  it("has no wildcard action, no NotAction/NotResource, no Deny to reason about", () => {
    for (const s of policy.Statement) {
      for (const a of Array.isArray(s.Action) ? s.Action : [s.Action]) expect(a, s.Sid).not.toMatch(/[*?]/);
      expect(s.NotAction).toBeUndefined();
      expect(s.NotResource).toBeUndefined();
      expect(s.Effect).toBe("Allow");
    }
  });

  it("allows only actions the agent calls or that have a written reason", () => {
    const extra = [...actionsOf(rolePolicy("NatRole", SAME_AZ_PARAMS))].filter((a) => !required.includes(a) && !(a in NOT_FROM_AGENT));
    expect(extra).toEqual([]);
  });

  it("dataplane: AssignPrivateIpAddresses only with the same-AZ pair on, and then only on network interfaces of this VPC", () => {
    const request = (vpc?: string): Request => ({ action: "ec2:AssignPrivateIpAddresses", resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:network-interface/eni-0b`, context: vpc ? { "ec2:Vpc": arn.vpc(vpc) } : {} });
    expect(actionsOf(policy).has("ec2:AssignPrivateIpAddresses")).toBe(false);
    expect(allows(policy, request(VPC))).toBe(false);
    const pair = rolePolicy("NatRole", SAME_AZ_PARAMS);
    expect(allows(pair, request(VPC))).toBe(true);
    expect(allows(pair, request(OTHER_VPC))).toBe(false);
    expect(allows(pair, request())).toBe(false);
    // Taking the address over is AllowReassignment on the holder's own interface: nothing unassigns it.
    expect(actionsOf(pair).has("ec2:UnassignPrivateIpAddresses")).toBe(false);
  });

  it("scopes every action that can be scoped: Resource '*' only for unscopable reads", () => {
    for (const s of policy.Statement) {
      const resources = Array.isArray(s.Resource) ? s.Resource : [s.Resource];
      if (!resources.includes("*")) continue;
      for (const a of Array.isArray(s.Action) ? s.Action : [s.Action]) expect(a, `${s.Sid} allows ${a} on *`).toMatch(UNSCOPABLE);
    }
  });

  it("ship: route writes only on this cluster's tables: an untagged table, or one tagged for another cluster, in the same VPC is denied", () => {
    for (const action of ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"]) {
      const write = (context: Record<string, string>) => allows(policy, { action, resource: arn.routeTable("rtb-0b"), context });
      expect(write({ "ec2:Vpc": arn.vpc(VPC), "aws:ResourceTag/routeleader:cluster": "prod-nat" }), action).toBe(true);
      expect(write({ "ec2:Vpc": arn.vpc(VPC) }), `${action} untagged`).toBe(false);
      expect(write({ "ec2:Vpc": arn.vpc(VPC), "aws:ResourceTag/routeleader:cluster": "other-nat" }), `${action} other cluster`).toBe(false);
      expect(write({ "ec2:Vpc": arn.vpc(OTHER_VPC), "aws:ResourceTag/routeleader:cluster": "prod-nat" }), `${action} other VPC`).toBe(false);
    }
  });

  it("route writes: only route tables of this VPC", () => {
    for (const action of ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"]) {
      expect(allows(policy, { action, resource: arn.routeTable("rtb-0ff"), context: { "ec2:Vpc": arn.vpc(OTHER_VPC) } }), action).toBe(false);
      expect(allows(policy, { action, resource: arn.routeTable("rtb-0ff") }), `${action} without ec2:Vpc`).toBe(false);
      expect(allows(policy, { action, resource: `arn:aws:ec2:us-east-1:${ACCOUNT}:route-table/rtb-0a`, context: { "ec2:Vpc": arn.vpc(VPC) } }), `${action} other region`).toBe(false);
    }
    expect(allows(policy, { action: "ec2:CreateRouteTable", resource: arn.vpc(VPC) })).toBe(false);
    expect(allows(policy, { action: "ec2:AssociateRouteTable", resource: arn.routeTable("rtb-0a"), context: { "ec2:Vpc": arn.vpc(VPC) } })).toBe(false);
  });

  it("ModifyInstanceAttribute: only instances of this stack's NAT groups", () => {
    const modify = (group?: string) =>
      allows(policy, { action: "ec2:ModifyInstanceAttribute", resource: arn.instance("i-0ff"), context: group ? { "aws:ResourceTag/aws:autoscaling:groupName": group } : {} });
    expect(modify(`${STACK}-nat-a`)).toBe(true);
    expect(modify(`${STACK}-nat-c`)).toBe(true);
    expect(modify(`${STACK}-consul`)).toBe(false);
    expect(modify("web-servers")).toBe(false);
    expect(modify(undefined)).toBe(false);
    expect(allows(policy, { action: "ec2:TerminateInstances", resource: arn.instance("i-0a"), context: { "aws:ResourceTag/aws:autoscaling:groupName": `${STACK}-nat-a` } })).toBe(false);
  });

  it("CompleteLifecycleAction: only this stack's NAT groups", () => {
    expect(allows(policy, { action: "autoscaling:CompleteLifecycleAction", resource: arn.group(`${STACK}-nat-c`) })).toBe(true);
    expect(allows(policy, { action: "autoscaling:CompleteLifecycleAction", resource: arn.group(`${STACK}-consul`) })).toBe(false);
    expect(allows(policy, { action: "autoscaling:CompleteLifecycleAction", resource: arn.group("other-nat-a") })).toBe(false);
  });

  it("ship: s3:GetObject only on the artifact and the Consul binary (when that is on S3), nothing else in the bucket", () => {
    expect(allows(policy, { action: "s3:GetObject", resource: arn.object(BUCKET, ARTIFACT_KEY) })).toBe(true);
    expect(allows(policy, { action: "s3:GetObject", resource: arn.object(BUCKET, CONSUL_KEY) })).toBe(true);
    expect(allows(policy, { action: "s3:GetObject", resource: arn.object(BUCKET, "releases/other.tar.gz") })).toBe(false);
    expect(allows(policy, { action: "s3:GetObject", resource: arn.object("other-bucket", ARTIFACT_KEY) })).toBe(false);
    expect(allows(policy, { action: "s3:PutObject", resource: arn.object(BUCKET, ARTIFACT_KEY) })).toBe(false);
    expect(allows(policy, { action: "s3:ListBucket", resource: `arn:aws:s3:::${BUCKET}` })).toBe(false);
    const https = rolePolicy("NatRole", { ...BASE_PARAMS, ConsulBinaryUrl: "https://releases.hashicorp.com/consul/1.16.1/consul_1.16.1_linux_arm64.zip" });
    const download = https.Statement.find((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).includes("s3:GetObject"))!;
    expect(download.Resource).toEqual([arn.object(BUCKET, ARTIFACT_KEY)]);
  });

  it("ship: SignalResource only on this stack; SetInstanceHealth only on this stack's NAT groups", () => {
    expect(allows(policy, { action: "cloudformation:SignalResource", resource: arn.stack(STACK) })).toBe(true);
    expect(allows(policy, { action: "cloudformation:SignalResource", resource: arn.stack("other-stack") })).toBe(false);
    expect(allows(policy, { action: "cloudformation:UpdateStack", resource: arn.stack(STACK) })).toBe(false);
    expect(allows(policy, { action: "autoscaling:SetInstanceHealth", resource: arn.group(`${STACK}-nat-b`) })).toBe(true);
    expect(allows(policy, { action: "autoscaling:SetInstanceHealth", resource: arn.group(`${STACK}-consul`) })).toBe(false);
    expect(allows(policy, { action: "autoscaling:SetInstanceHealth", resource: arn.group("web-servers") })).toBe(false);
  });

  it("ssm:GetParameter: only the two named parameters", () => {
    expect(allows(policy, { action: "ssm:GetParameter", resource: arn.parameter("/routeleader/prod/other") })).toBe(false);
    expect(allows(policy, { action: "ssm:GetParameters", resource: arn.parameter(GOSSIP) })).toBe(false);
  });

  it("the scoping names exactly the groups and VPC the stack creates", () => {
    const ctx = evaluateConditions(template, BASE_PARAMS);
    const groupNames = ["NatGroupA", "NatGroupB", "NatGroupC"].map((g) => resolve(template.Resources[g].Properties.AutoScalingGroupName, ctx) as string);
    const byAction = (a: string) => policy.Statement.find((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).includes(a)) as Statement;
    expect(byAction("ec2:ModifyInstanceAttribute").Condition).toEqual({ StringEquals: { "aws:ResourceTag/aws:autoscaling:groupName": groupNames } });
    const lifecycle = byAction("autoscaling:CompleteLifecycleAction").Resource as string[];
    expect(lifecycle.map((r) => r.split("autoScalingGroupName/")[1])).toEqual(groupNames);
    expect(lifecycle.every((r) => globMatch(r, arn.group(r.split("autoScalingGroupName/")[1]!)))).toBe(true);
    expect(byAction("ec2:CreateRoute").Condition).toEqual({ StringEquals: { "ec2:Vpc": arn.vpc(VPC), "aws:ResourceTag/routeleader:cluster": "prod-nat" } });
  });

  it("with two AZs the third group is not named, and without secrets there is no ssm:GetParameter", () => {
    const twoAz = rolePolicy("NatRole", { ...BASE_PARAMS, PublicSubnetC: "", ConsulGossipKeyParameter: "", ConsulAclTokenParameter: "", ConsulSecurity: "insecure" });
    expect(allows(twoAz, { action: "ec2:ModifyInstanceAttribute", resource: arn.instance("i-0a"), context: { "aws:ResourceTag/aws:autoscaling:groupName": `${STACK}-nat-c` } })).toBe(false);
    expect(allows(twoAz, { action: "autoscaling:CompleteLifecycleAction", resource: arn.group(`${STACK}-nat-c`) })).toBe(false);
    expect(allows(twoAz, ownRequest("ec2:ModifyInstanceAttribute"))).toBe(true);
    expect(actionsOf(twoAz).has("ssm:GetParameter")).toBe(false);
    const onlyToken = rolePolicy("NatRole", { ...BASE_PARAMS, ConsulGossipKeyParameter: "" });
    expect(allows(onlyToken, { action: "ssm:GetParameter", resource: arn.parameter(TOKEN) })).toBe(true);
    expect(allows(onlyToken, { action: "ssm:GetParameter", resource: arn.parameter(GOSSIP) })).toBe(false);
  });
});

describe("Consul server role", () => {
  const policy = rolePolicy("ConsulServerRole");
  const SECURE = { ...BASE_PARAMS, ConsulCaParameter: "/routeleader/prod/ca", ConsulCaKeyParameter: "/routeleader/prod/ca-key", ConsulManagementTokenParameter: "/routeleader/prod/management-token" };

  it("can find its peers and be reached through Session Manager, and nothing else", () => {
    expect([...actionsOf(policy)].sort()).toEqual(
      ["cloudformation:SignalResource", "ec2:DescribeInstances", "s3:GetObject", "ssm:GetParameter", "ssm:GetParametersByPath", "ssm:PutParameter", "ssm:AddTagsToResource", "ssm:DeleteParameters", "ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"].sort(),
    );
    expect(allows(policy, { action: "ec2:CreateRoute", resource: arn.routeTable("rtb-0a"), context: { "ec2:Vpc": arn.vpc(VPC) } })).toBe(false);
    expect(allows(policy, { action: "ssm:GetParameter", resource: arn.parameter("/other") })).toBe(false);
    expect(allows(policy, { action: "s3:GetObject", resource: arn.object(BUCKET, "releases/other.tar.gz") })).toBe(false);
    expect(allows(policy, { action: "cloudformation:SignalResource", resource: arn.stack("other-stack") })).toBe(false);
  });

  it("ship: secure mode: only the servers read the CA key and the management token, and they write node credentials of this cluster only", () => {
    const server = rolePolicy("ConsulServerRole", SECURE);
    const nat = rolePolicy("NatRole", SECURE);
    for (const secret of ["/routeleader/prod/ca-key", "/routeleader/prod/management-token"]) {
      expect(allows(server, { action: "ssm:GetParameter", resource: arn.parameter(secret) })).toBe(true);
      expect(allows(nat, { action: "ssm:GetParameter", resource: arn.parameter(secret) })).toBe(false);
    }
    expect(allows(nat, { action: "ssm:GetParameter", resource: arn.parameter("/routeleader/prod/ca") })).toBe(true);
    const node = arn.parameter("/routeleader/prod-nat/nodes/i-0a/token");
    expect(allows(server, { action: "ssm:PutParameter", resource: node })).toBe(true);
    expect(allows(server, { action: "ssm:PutParameter", resource: arn.parameter("/routeleader/other/nodes/i-0a/token") })).toBe(false);
    // Revocation (node-credentials.sh): list this cluster's node parameters, delete those of a gone instance; no one else's.
    expect(allows(server, { action: "ssm:GetParametersByPath", resource: arn.parameter("/routeleader/prod-nat/nodes") })).toBe(true);
    expect(allows(server, { action: "ssm:DeleteParameters", resource: node })).toBe(true);
    expect(allows(server, { action: "ssm:DeleteParameters", resource: arn.parameter("/routeleader/other/nodes/i-0a/token") })).toBe(false);
    expect(allows(server, { action: "ssm:DeleteParameters", resource: arn.parameter("/routeleader/prod/management-token") })).toBe(false);
    expect(allows(nat, { action: "ssm:DeleteParameters", resource: node })).toBe(false);
    expect(allows(nat, { action: "ssm:GetParameter", resource: node })).toBe(true);
    expect(allows(nat, { action: "ssm:PutParameter", resource: node })).toBe(false);
    // insecure: no node credentials at all.
    const insecure = rolePolicy("NatRole", { ...SECURE, ConsulSecurity: "insecure" });
    expect(allows(insecure, { action: "ssm:GetParameter", resource: node })).toBe(false);
  });
});

describe("ship: kms:Decrypt only for the key of the Consul secrets", () => {
  const KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
  const SECURE = { ...BASE_PARAMS, ConsulCaParameter: "/routeleader/prod/ca", ConsulCaKeyParameter: "/routeleader/prod/ca-key", ConsulManagementTokenParameter: "/routeleader/prod/management-token" };
  const VIA_SSM = { "kms:ViaService": `ssm.${REGION}.amazonaws.com` };

  it("ship: with the AWS-managed aws/ssm key (the default) neither role gets any kms: action", () => {
    for (const role of ["NatRole", "ConsulServerRole"]) expect([...actionsOf(rolePolicy(role, SECURE))].filter((a) => a.startsWith("kms:")), role).toEqual([]);
  });

  it("ship: with ConsulSecretsKmsKeyArn both roles may decrypt with that key, through SSM only, and with no other key", () => {
    for (const role of ["NatRole", "ConsulServerRole"]) {
      const policy = rolePolicy(role, { ...SECURE, ConsulSecretsKmsKeyArn: KEY });
      expect([...actionsOf(policy)].filter((a) => a.startsWith("kms:")), role).toEqual(["kms:Decrypt"]);
      expect(allows(policy, { action: "kms:Decrypt", resource: KEY, context: VIA_SSM }), role).toBe(true);
      expect(allows(policy, { action: "kms:Decrypt", resource: KEY }), `${role} outside SSM`).toBe(false);
      expect(allows(policy, { action: "kms:Decrypt", resource: KEY, context: { "kms:ViaService": `s3.${REGION}.amazonaws.com` } }), `${role} through S3`).toBe(false);
      expect(allows(policy, { action: "kms:Decrypt", resource: KEY.replace("1234abcd", "99999999"), context: VIA_SSM }), `${role} another key`).toBe(false);
    }
  });
});

describe("docs/deploy.md", () => {
  it("documents every action of the NAT role in its IAM table, and no other", () => {
    const doc = readFileSync(join(REPO, "docs", "deploy.md"), "utf8");
    const section = doc.slice(doc.indexOf("## IAM policy"));
    const table = section.slice(0, section.indexOf("\n## ", 4) === -1 ? undefined : section.indexOf("\n## ", 4));
    const documented = new Set([...table.matchAll(/^\| `([a-z0-9]+:[A-Za-z]+)`/gm)].map((m) => m[1]!));
    // With every optional statement present: a customer-managed key for the secrets, the same-AZ pair.
    const key = `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
    expect([...documented].sort()).toEqual([...actionsOf(rolePolicy("NatRole", { ...SAME_AZ_PARAMS, ConsulSecretsKmsKeyArn: key }))].sort());
  });
});
