import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { AutoScalingClient, DescribeAutoScalingGroupsCommand, type AutoScalingGroup } from "@aws-sdk/client-auto-scaling";
import { CloudFormationClient, CreateStackCommand, DescribeStackResourcesCommand, DescribeStacksCommand, type Parameter, type Stack } from "@aws-sdk/client-cloudformation";
import {
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeInstancesCommand,
  DescribeLaunchTemplateVersionsCommand,
  DescribeRouteTablesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  EC2Client,
  type IpPermission,
} from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { binaryPath } from "../support/binaries.js";
import { evaluateConditions, loadTemplate, REPO, resolve } from "../support/cfn.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { waitUntil } from "../support/process.js";

const run = promisify(execFile);
const TEMPLATES = readdirSync(join(REPO, "cloudformation")).filter((f) => f.endsWith(".yaml")).sort();
const USER_DATA = readFileSync(join(REPO, "scripts", "user-data.sh"), "utf8");
/** Release parameters (moto checks no object; the sandbox tests download real ones). */
const RELEASE_PARAMS = {
  ArtifactBucket: "rl-artifacts",
  ArtifactKey: "releases/routeleader-0.1.0-linux-arm64.tar.gz",
  ArtifactSha256: "a".repeat(64),
  ConsulBinaryUrl: "https://releases.hashicorp.com/consul/1.16.1/consul_1.16.1_linux_arm64.zip",
  ConsulBinarySha256: "b".repeat(64),
  // Secure by default: the secrets' SSM parameter names (moto reads none of them).
  ConsulGossipKeyParameter: "/routeleader/test/gossip-key",
  ConsulCaParameter: "/routeleader/test/ca",
  ConsulCaKeyParameter: "/routeleader/test/ca-key",
  ConsulManagementTokenParameter: "/routeleader/test/management-token",
};

/**
 * Template features moto's CloudFormation skips (it logs "No Moto CloudFormation support" and
 * lists the resource with no logical id or type). The stack still reaches CREATE_COMPLETE; the
 * feature is covered by cfn-lint and by the template assertions below instead.
 */
const MOTO_SKIPS = ["AWS::AutoScaling::LifecycleHook", "AWS::EC2::SecurityGroupEgress", "AWS::EC2::VPCCidrBlock", "AWS::CloudWatch::Alarm"];
// Other moto divergences met here (created, but not as AWS would show them): Tags on
// AWS::EC2::RouteTable are dropped; SubnetRouteTableAssociation is not reflected in
// DescribeRouteTables; every instance of a multi-subnet group lands in its first subnet.

async function cfnLint(args: string[], cwd = REPO): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(binaryPath("cfnLint"), args, { cwd });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

describe("cfn-lint", () => {
  it("finds both templates", () => {
    expect(TEMPLATES).toEqual(["demo-vpc.yaml", "routeleader-nat.yaml"]);
  });

  it("ship: cfn-lint passes every template with the repository's .cfnlintrc: no error, no warning, no informational finding", async () => {
    const res = await cfnLint([]);
    expect(res.out).toBe("");
    expect(res.code).toBe(0);
  });

  it.each(TEMPLATES)("ship: cfn-lint: %s on its own, JSON output, two regions: no finding", async (name) => {
    const res = await cfnLint(["--format", "json", "--include-checks", "I", "--regions", "us-east-1", "eu-west-1", "--", join("cloudformation", name)]);
    expect(JSON.parse(res.out)).toEqual([]);
    expect(res.code).toBe(0);
  });

  it("ignores no rule globally; each scoped ignore is listed with its reason in .cfnlintrc", () => {
    const rc = readFileSync(join(REPO, ".cfnlintrc"), "utf8");
    expect(rc).not.toMatch(/^ignore_checks:/m);
    const ignored = new Set<string>();
    for (const name of TEMPLATES) {
      for (const m of readFileSync(join(REPO, "cloudformation", name), "utf8").matchAll(/ignore_checks: \[([A-Z0-9, ]+)\]/g)) {
        for (const rule of m[1]!.split(",")) ignored.add(rule.trim());
      }
    }
    expect([...ignored].sort()).toEqual(["I1022", "W3002"]);
    for (const rule of ignored) expect(rc).toMatch(new RegExp(`^#\\s+${rule} \\S.*:`, "m"));
  });

  it("the scoped ignores are load-bearing: without them cfn-lint reports exactly those rules", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rl-cfnlint-"));
    try {
      for (const name of TEMPLATES) {
        const text = readFileSync(join(REPO, "cloudformation", name), "utf8").replace(/ignore_checks: \[[A-Z0-9, ]+\]/g, "ignore_checks: []");
        writeFileSync(join(dir, name), text);
      }
      const res = await cfnLint(["--format", "json", "--include-checks", "I", "--", ...TEMPLATES.map((t) => join(dir, t))], dir);
      const rules = (JSON.parse(res.out) as { Rule: { Id: string } }[]).map((f) => f.Rule.Id).sort();
      expect(rules).toEqual(["I1022", "W3002"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("template content", () => {
  const nat = loadTemplate("routeleader-nat.yaml");
  const demo = loadTemplate("demo-vpc.yaml");
  const launchTemplates = ["NatLaunchTemplate", "ConsulServerLaunchTemplate"];

  it.each(launchTemplates)("%s requires IMDSv2 with hop limit 1 and boots the latest Amazon Linux 2023 from the public SSM parameter", (name) => {
    const data = nat.Resources[name].Properties.LaunchTemplateData;
    expect(data.MetadataOptions).toMatchObject({ HttpEndpoint: "enabled", HttpTokens: "required", HttpPutResponseHopLimit: 1 });
    expect(data.ImageId).toEqual({ Ref: "LatestAmiId" });
    expect(nat.Parameters.LatestAmiId.Type).toBe("AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>");
    expect(nat.Parameters.LatestAmiId.Default).toMatch(/^\/aws\/service\/ami-amazon-linux-latest\/al2023-ami-kernel-default-(arm64|x86_64)$/);
  });

  it.each(launchTemplates)("%s user data is a settings header then scripts/user-data.sh byte for byte", (name) => {
    const join = nat.Resources[name].Properties.LaunchTemplateData.UserData["Fn::Base64"]["Fn::Join"];
    expect(join[0]).toBe("");
    expect(join[1]).toHaveLength(2);
    expect(join[1][1]).toBe(`${USER_DATA}# @end scripts/user-data.sh\n`);
  });

  it("the embedded copies are up to date (node scripts/embed-user-data.mjs --check)", async () => {
    await expect(run(process.execPath, [join(REPO, "scripts", "embed-user-data.mjs"), "--check"])).resolves.toBeDefined();
  });

  it("ship: the user data stays under EC2's 16 KB limit", () => {
    const header = (nat.Resources.NatLaunchTemplate.Properties.LaunchTemplateData.UserData["Fn::Base64"]["Fn::Join"][1][0]["Fn::Sub"][0] as string).length;
    // Header with every parameter at its longest allowed value stays well under 2 KB.
    expect(Buffer.byteLength(USER_DATA) + header + 2048).toBeLessThan(16 * 1024);
  });

  it("one NAT autoscaling group per AZ, each in one subnet, each with a termination lifecycle hook", () => {
    for (const az of ["A", "B", "C"]) {
      const group = nat.Resources[`NatGroup${az}`];
      expect(group.Type).toBe("AWS::AutoScaling::AutoScalingGroup");
      expect(group.Properties.VPCZoneIdentifier).toEqual([{ Ref: `PublicSubnet${az}` }]);
      const hook = nat.Resources[`NatTerminationHook${az}`];
      expect(hook.Type).toBe("AWS::AutoScaling::LifecycleHook");
      expect(hook.Properties).toMatchObject({ AutoScalingGroupName: { Ref: `NatGroup${az}` }, LifecycleTransition: "autoscaling:EC2_INSTANCE_TERMINATING" });
    }
  });

  it("ship: each group launches truthfully (CreationPolicy: one signal per instance) and rolls make-before-break, one AZ after the other", () => {
    const groups = ["NatGroupA", "NatGroupB", "NatGroupC"].map((g) => nat.Resources[g]);
    for (const g of groups) {
      expect(g.CreationPolicy).toEqual({ ResourceSignal: { Count: { Ref: "NodesPerAz" }, Timeout: "PT15M" } });
      expect(g.UpdatePolicy.AutoScalingRollingUpdate).toMatchObject({ MinInstancesInService: { Ref: "NodesPerAz" }, MaxBatchSize: 1, WaitOnResourceSignals: true });
      // Room for the extra instance: MaxSize above the largest NodesPerAz.
      expect(Number(g.Properties.MaxSize)).toBeGreaterThan(nat.Parameters.NodesPerAz.MaxValue);
    }
    expect(groups.map((g) => g.DependsOn)).toEqual([undefined, "NatGroupA", "NatGroupB"]);
    const servers = nat.Resources.ConsulServerGroup;
    expect(servers.CreationPolicy.ResourceSignal.Count).toBe(3);
    expect(servers.UpdatePolicy.AutoScalingRollingUpdate).toMatchObject({ MinInstancesInService: 3, MaxBatchSize: 1, WaitOnResourceSignals: true });
    expect(Number(servers.Properties.MaxSize)).toBe(4);
  });

  it("ship: every instance is told its stack, the resource it signals, the hook name and the verified downloads", () => {
    const ctx = evaluateConditions(nat, { ...RELEASE_PARAMS, ClusterName: "prod-nat", VpcId: "vpc-1", VpcCidr: "10.0.0.0/16", PublicSubnetA: "subnet-0a", PublicSubnetB: "subnet-0b", PublicSubnetC: "subnet-0c", "AWS::StackName": "prod-nat", AgentLogGroup: "/routeleader/prod-nat/agents" });
    const header = (lt: string) => resolve(nat.Resources[lt].Properties.LaunchTemplateData.UserData["Fn::Base64"]["Fn::Join"][1][0], { ...ctx, params: { ...ctx.params, "AWS::StackName": "prod-nat" } }) as string;
    const natHeader = header("NatLaunchTemplate");
    expect(natHeader).toContain("export RL_SIGNAL_STACK='prod-nat' RL_SIGNAL_BY_SUBNET='subnet-0a=NatGroupA,subnet-0b=NatGroupB,subnet-0c=NatGroupC'");
    expect(natHeader).toContain("RL_LIFECYCLE_HOOK=routeleader-release");
    expect(natHeader).toContain("export RL_LOG_GROUP='/routeleader/prod-nat/agents' RL_METRICS_NAMESPACE='routeleader'");
    expect(nat.Resources.NatTerminationHookA.Properties.LifecycleHookName).toBe("routeleader-release");
    expect(natHeader).toContain(`export RL_CONSUL_URL='${RELEASE_PARAMS.ConsulBinaryUrl}' RL_CONSUL_SHA256='${"b".repeat(64)}'`);
    const serverHeader = header("ConsulServerLaunchTemplate");
    expect(serverHeader).toContain("export RL_SIGNAL_STACK='prod-nat' RL_SIGNAL_RESOURCE=ConsulServerGroup");
    expect(serverHeader).toContain(`RL_ARTIFACT_SHA256='${"a".repeat(64)}'`);
    expect(nat.Parameters.RouteleaderPackage).toBeUndefined(); // nothing installed by name from a registry
  });

  describe("dataplane: the same-AZ pair (SameAzPair, off by default)", () => {
    const BASE = { ...RELEASE_PARAMS, ClusterName: "prod-nat", VpcId: "vpc-1", VpcCidr: "10.0.0.0/16", PublicSubnetA: "subnet-0a", PublicSubnetB: "subnet-0b", PublicSubnetC: "subnet-0c", "AWS::StackName": "prod-nat", AgentLogGroup: "/routeleader/prod-nat/agents", PrivateRouteTableIds: "rtb-0aaa,rtb-0bbb,rtb-0ccc" };
    const PAIR = { ...BASE, NodesPerAz: "2", SameAzPair: "B", SameAzRouteTableId: "rtb-0bbb", SameAzPrivateIp: "10.0.1.200", SameAzEipAllocationId: "eipalloc-0123456789abcdef0" };
    const natHeader = (p: Record<string, string>) => resolve(nat.Resources.NatLaunchTemplate.Properties.LaunchTemplateData.UserData["Fn::Base64"]["Fn::Join"][1][0], evaluateConditions(nat, p)) as string;
    /** The AssertDescription of every template Rule the parameters break (what CloudFormation refuses before creating anything). */
    const brokenRules = (p: Record<string, string>) => {
      const ctx = evaluateConditions(nat, p);
      return Object.values<{ RuleCondition?: unknown; Assertions: { Assert: unknown; AssertDescription: string }[] }>(nat.Rules)
        .filter((r) => r.RuleCondition === undefined || resolve(r.RuleCondition, ctx) === true)
        .flatMap((r) => r.Assertions.filter((a) => resolve(a.Assert, ctx) !== true).map((a) => a.AssertDescription));
    };
    /** The NAT security group's ingress rules, as "proto from-to source". */
    const natIngress = (p: Record<string, string>) => {
      const ctx = evaluateConditions(nat, p);
      ctx.params = { ...ctx.params, NatSecurityGroup: "nat", ConsulServerSecurityGroup: "servers" };
      return Object.values<{ Type: string; Condition?: string; Properties: unknown }>(nat.Resources)
        .filter((r) => r.Type === "AWS::EC2::SecurityGroupIngress" && (!r.Condition || ctx.conditions![r.Condition]))
        .map((r) => resolve(r.Properties, ctx) as Record<string, string | number>)
        .filter((r) => r.GroupId === "nat")
        .map((r) => `${r.IpProtocol} ${r.FromPort}-${r.ToPort} ${r.CidrIp ?? r.SourceSecurityGroupId}`)
        .sort();
    };

    it("off: the header exports an empty RL_SAME_AZ (every NAT MASQUERADEs) and the VPC reaches every UDP port but Consul's", () => {
      expect(natHeader(BASE)).toContain("export RL_SAME_AZ=''\n");
      expect(natIngress(BASE).filter((r) => r.startsWith("udp"))).toEqual(["udp 0-8299 10.0.0.0/16", "udp 8301-8301 nat", "udp 8301-8301 servers", "udp 8303-65535 10.0.0.0/16"]);
      expect(brokenRules(BASE)).toEqual([]);
    });

    it("on, tables by id: RL_SAME_AZ names the route of SameAzRouteTableId, the pair's subnet (its AZ's group), the address and the Elastic IP", () => {
      expect(natHeader(PAIR)).toContain("export RL_SAME_AZ='nat-rtb-0bbb=subnet-0b:10.0.1.200:eipalloc-0123456789abcdef0'\n");
      expect(natHeader({ ...PAIR, SameAzPair: "A", SameAzRouteTableId: "rtb-0aaa" })).toContain("export RL_SAME_AZ='nat-rtb-0aaa=subnet-0a:");
      expect(natHeader({ ...PAIR, SameAzPair: "C", SameAzRouteTableId: "rtb-0ccc" })).toContain("export RL_SAME_AZ='nat-rtb-0ccc=subnet-0c:");
      expect(brokenRules(PAIR)).toEqual([]);
    });

    it("on, tables by tag: the one route nat-default", () => {
      const byTag = { ...PAIR, PrivateRouteTableIds: "", SameAzRouteTableId: "" };
      expect(natHeader(byTag)).toContain("export RL_SAME_AZ='nat-default=subnet-0b:10.0.1.200:eipalloc-0123456789abcdef0'\n");
      expect(brokenRules(byTag)).toEqual([]);
    });

    it("on: conntrackd's UDP 3780 reaches a NAT node only from the stack's NAT nodes; the VPC-wide UDP rule leaves 3780 out", () => {
      expect(natIngress(PAIR).filter((r) => r.startsWith("udp"))).toEqual(["udp 0-3779 10.0.0.0/16", "udp 3780-3780 nat", "udp 3781-8299 10.0.0.0/16", "udp 8301-8301 nat", "udp 8301-8301 servers", "udp 8303-65535 10.0.0.0/16"]);
      // TCP and ICMP are as without the pair.
      expect(natIngress(PAIR).filter((r) => !r.startsWith("udp"))).toEqual(natIngress(BASE).filter((r) => !r.startsWith("udp")));
    });

    it.each([
      [{ SameAzPrivateIp: "" }, "SameAzPair needs SameAzPrivateIp: a free address of the pair's public subnet"],
      [{ SameAzEipAllocationId: "" }, "SameAzPair needs SameAzEipAllocationId: a secondary private IP has no public address of its own"],
      [{ NodesPerAz: "1" }, "SameAzPair needs NodesPerAz 2: a pair is two NAT instances in one subnet"],
      [{ NodesPerAz: "3" }, "SameAzPair needs NodesPerAz 2: a pair is two NAT instances in one subnet"],
      [{ SameAzRouteTableId: "" }, "SameAzPair with PrivateRouteTableIds needs SameAzRouteTableId: the table the pair serves"],
      [{ PrivateRouteTableIds: "" }, "SameAzPair with tables selected by tag serves the one route nat-default: leave SameAzRouteTableId empty"],
      [{ SameAzPair: "C", PublicSubnetC: "" }, "SameAzPair C needs PublicSubnetC"],
    ])("on, refused by the template's Rules before anything is created: %j", (change, message) => {
      expect(brokenRules({ ...PAIR, ...change })).toEqual([message]);
    });
  });

  it("ship: demo with 3 AZs: the NAT stack waits for the third public subnet's association too", () => {
    expect(demo.Resources.Nat.DependsOn).toContain("PublicAssociationsReady");
    expect(demo.Resources.PublicAssociationsReady.Metadata.ThirdAz).toEqual({ "Fn::If": ["ThreeAzs", { Ref: "PublicAssociationC" }, "none"] });
    const ctx = evaluateConditions(demo, { AzCount: "3" });
    expect(resolve(demo.Resources.PublicAssociationsReady.Metadata, { ...ctx, params: { ...ctx.params, PublicAssociationC: "rtbassoc-0c" } })).toEqual({ ThirdAz: "rtbassoc-0c" });
  });

  it("the demo stack nests routeleader-nat.yaml and passes every parameter the NAT stack requires", () => {
    const nested = demo.Resources.Nat;
    expect(nested.Type).toBe("AWS::CloudFormation::Stack");
    expect(nested.Properties.TemplateURL).toBe("./routeleader-nat.yaml");
    const required = Object.entries<{ Default?: unknown }>(nat.Parameters)
      .filter(([, p]) => p.Default === undefined)
      .map(([k]) => k);
    for (const p of required) expect(Object.keys(nested.Properties.Parameters)).toContain(p);
    for (const p of Object.keys(nested.Properties.Parameters)) expect(Object.keys(nat.Parameters)).toContain(p);
  });

  it("the templates use no feature moto cannot create except the known skips, and no Fn::Cidr", () => {
    for (const name of TEMPLATES) {
      expect(JSON.stringify(loadTemplate(name))).not.toContain('"Fn::Cidr"');
      const types = new Set(Object.values<{ Type: string }>(loadTemplate(name).Resources).map((r) => r.Type));
      for (const t of types) if (t.includes("LifecycleHook") || t.includes("Egress") || t.includes("CidrBlock")) expect(MOTO_SKIPS).toContain(t);
    }
  });
});

// ------------------------------------------------------------------ moto

/** PUT to moto's S3 (path style); moto routes by the credential scope and checks no signature. */
function s3Put(endpoint: string, path: string, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${endpoint}${path}`, {
      method: "PUT",
      timeout: 10_000,
      headers: { authorization: "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" },
    });
    req.on("response", (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error(`PUT ${path}: timeout`)));
    req.on("error", reject);
    req.end(body);
  });
}

const params = (p: Record<string, string>): Parameter[] => Object.entries(p).map(([ParameterKey, ParameterValue]) => ({ ParameterKey, ParameterValue }));
const output = (s: Stack, key: string): string => {
  const v = s.Outputs?.find((o) => o.OutputKey === key)?.OutputValue;
  if (v === undefined) throw new Error(`stack ${s.StackName} has no output ${key}`);
  return v;
};
const decode = (b64: string | undefined) => Buffer.from(b64 ?? "", "base64").toString("utf8");

describe("the stacks in moto's CloudFormation", () => {
  let moto: StartedMoto;
  let cf: CloudFormationClient;
  let ec2: EC2Client;
  let asg: AutoScalingClient;

  /** `aws cloudformation package`, against moto's S3: upload the nested template, point TemplateURL at it. */
  async function packagedDemo(): Promise<string> {
    expect(await s3Put(moto.endpoint, "/routeleader-templates")).toBe(200);
    expect(await s3Put(moto.endpoint, "/routeleader-templates/routeleader-nat.yaml", readFileSync(join(REPO, "cloudformation", "routeleader-nat.yaml"), "utf8"))).toBe(200);
    const text = readFileSync(join(REPO, "cloudformation", "demo-vpc.yaml"), "utf8");
    const packaged = text.replace("TemplateURL: ./routeleader-nat.yaml", "TemplateURL: https://s3.amazonaws.com/routeleader-templates/routeleader-nat.yaml");
    expect(packaged).not.toBe(text);
    return packaged;
  }

  async function createAndWait(name: string, body: string, parameters: Record<string, string>): Promise<Stack> {
    await cf.send(new CreateStackCommand({ StackName: name, TemplateBody: body, Parameters: params(parameters), Capabilities: ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"] }));
    return waitUntil(
      `stack ${name}`,
      async () => {
        const s = (await cf.send(new DescribeStacksCommand({ StackName: name }))).Stacks?.[0];
        if (!s || s.StackStatus?.endsWith("IN_PROGRESS")) return undefined;
        if (s.StackStatus !== "CREATE_COMPLETE") throw new Error(`${name}: ${s.StackStatus} ${s.StackStatusReason ?? ""}`);
        return s;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  }

  async function groups(names: string[]): Promise<Map<string, AutoScalingGroup>> {
    const out = await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: names }));
    return new Map((out.AutoScalingGroups ?? []).map((g) => [g.AutoScalingGroupName!, g]));
  }

  beforeAll(async () => {
    moto = await startMoto();
    const client = { ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 };
    cf = new CloudFormationClient(client);
    ec2 = new EC2Client(client);
    asg = new AutoScalingClient(client);
  });
  afterAll(async () => {
    cf?.destroy();
    ec2?.destroy();
    asg?.destroy();
    await moto?.stop();
  });

  describe("demo VPC, 3 AZs, nesting the NAT stack with its own Consul servers", () => {
    let demo: Stack;
    let nat: Stack;
    let vpcId: string;
    let privateTables: string[];

    beforeAll(async () => {
      await moto.reset();
      demo = await createAndWait("rl-demo", await packagedDemo(), { ...RELEASE_PARAMS, ClusterName: "demo-nat", AzCount: "3" });
      const natName = output(demo, "NatStackId");
      nat = (await cf.send(new DescribeStacksCommand({ StackName: natName }))).Stacks![0]!;
      vpcId = output(demo, "VpcId");
      privateTables = output(demo, "PrivateRouteTableIds").split(",");
    });

    it("egress: the NAT stack creates the agents' log group with its retention, and the alarm topic (agent alarms on by default)", async () => {
      const python = join(binaryPath("moto"), "..", "python");
      const script = `import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
groups = boto3.client("logs", **kw).describe_log_groups(logGroupNamePrefix="/routeleader/")["logGroups"]
topics = boto3.client("sns", **kw).list_topics()["Topics"]
print(json.dumps({"groups": [[g["logGroupName"], g.get("retentionInDays")] for g in groups], "topics": [t["TopicArn"] for t in topics]}))`;
      const { stdout } = await run(python, ["-c", script, moto.endpoint]);
      const found = JSON.parse(stdout) as { groups: [string, number][]; topics: string[] };
      expect(found.groups).toEqual([[`/routeleader/${nat.StackName}/agents`, 30]]);
      // moto's CloudFormation creates no AWS::CloudWatch::Alarm (a known skip, below); their
      // definitions are held by cfn-lint and watchdog-stack.test.ts. Their topic is created.
      expect(found.topics).toHaveLength(1);
      expect(found.topics[0]).toContain("AlarmTopic");
    });

    it("both stacks reach CREATE_COMPLETE", () => {
      expect(demo.StackStatus).toBe("CREATE_COMPLETE");
      expect(nat.StackStatus).toBe("CREATE_COMPLETE");
      expect(nat.StackName).toMatch(/^rl-demo-Nat-/);
    });

    it("creates the VPC, a public and a private subnet in each of 3 AZs, and one private route table per AZ with no default route yet", async () => {
      const subnets = (await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "vpc-id", Values: [vpcId] }] }))).Subnets!;
      expect(subnets.map((s) => s.CidrBlock).sort()).toEqual(["10.42.0.0/24", "10.42.1.0/24", "10.42.128.0/20", "10.42.144.0/20", "10.42.160.0/20", "10.42.2.0/24"]);
      expect(new Set(subnets.map((s) => s.AvailabilityZone)).size).toBe(3);
      expect(privateTables).toHaveLength(3);
      const tables = (await ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: privateTables }))).RouteTables!;
      expect(tables).toHaveLength(3);
      for (const t of tables) {
        expect(t.VpcId).toBe(vpcId);
        expect(t.Routes?.some((r) => r.DestinationCidrBlock === "0.0.0.0/0")).toBe(false); // routeleader creates it
      }
      // Known moto gap: AWS::EC2::SubnetRouteTableAssociation is created (listed below) but not
      // reflected in DescribeRouteTables' Associations, so the table ↔ subnet ↔ AZ link is
      // checked through the stack's resources instead.
      const resources = (await cf.send(new DescribeStackResourcesCommand({ StackName: demo.StackName }))).StackResources!;
      const physical = (logical: string) => resources.find((r) => r.LogicalResourceId === logical)?.PhysicalResourceId;
      const privateAzs = new Set<string>();
      for (const az of ["A", "B", "C"]) {
        expect(physical(`PrivateAssociation${az}`)).toBeTruthy();
        expect(privateTables).toContain(physical(`PrivateRouteTable${az}`));
        const subnet = subnets.find((s) => s.SubnetId === physical(`PrivateSubnet${az}`))!;
        expect(subnet.CidrBlock).toMatch(/\/20$/);
        privateAzs.add(subnet.AvailabilityZone!);
      }
      expect(privateAzs.size).toBe(3);
    });

    it("runs one NAT group per AZ whose instance lands in that AZ's public subnet (AZ affinity), and 3 Consul servers", async () => {
      const natGroups = output(nat, "NatGroupNames").split(",");
      expect(natGroups.map((g) => g.slice(-5))).toEqual(["nat-a", "nat-b", "nat-c"]);
      const consulGroup = output(nat, "ConsulServerGroupName");
      const found = await groups([...natGroups, consulGroup]);
      const subnets = (await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "vpc-id", Values: [vpcId] }] }))).Subnets!;
      const azs = new Set<string>();
      for (const name of natGroups) {
        const g = found.get(name)!;
        expect(g.Instances).toHaveLength(1);
        const subnet = subnets.find((s) => s.SubnetId === g.VPCZoneIdentifier)!;
        expect(subnet.CidrBlock).toMatch(/\/24$/); // public
        expect(g.Instances![0]!.AvailabilityZone).toBe(subnet.AvailabilityZone);
        azs.add(subnet.AvailabilityZone!);
      }
      expect(azs.size).toBe(3);
      const consul = found.get(consulGroup)!;
      expect(consul.Instances).toHaveLength(3);
      expect(consul.VPCZoneIdentifier!.split(",")).toHaveLength(3);
      // moto puts every instance of a multi-subnet group in the first subnet: per-AZ groups are
      // what makes AZ placement testable (and deterministic on AWS too).
    });

    it("tags the NAT instances for peer discovery and the servers for Consul's retry_join", async () => {
      const byTag = async (key: string, value: string) =>
        (await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${key}`, Values: [value] }, { Name: "vpc-id", Values: [vpcId] }, { Name: "instance-state-name", Values: ["running"] }] }))).Reservations!.flatMap((r) => r.Instances!);
      expect(await byTag("routeleader:cluster", "demo-nat")).toHaveLength(3);
      expect(await byTag("routeleader:consul-server", "demo-nat")).toHaveLength(4 - 1);
    });

    it("launch templates: IMDSv2 required, hop limit 1, the AMI from SSM, and user data with this stack's tables and bootstrap.sh", async () => {
      const resources = (await cf.send(new DescribeStackResourcesCommand({ StackName: nat.StackName }))).StackResources!;
      const ltId = (logical: string) => resources.find((r) => r.LogicalResourceId === logical)!.PhysicalResourceId!;
      for (const logical of ["NatLaunchTemplate", "ConsulServerLaunchTemplate"]) {
        const v = (await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: ltId(logical) }))).LaunchTemplateVersions![0]!;
        const data = v.LaunchTemplateData!;
        expect(data.MetadataOptions).toMatchObject({ HttpTokens: "required", HttpPutResponseHopLimit: 1, HttpEndpoint: "enabled" });
        expect(data.ImageId).toMatch(/^ami-[0-9a-f]+$/);
        const userData = decode(data.UserData);
        expect(userData.startsWith("#!/bin/bash\n")).toBe(true);
        expect(userData).toContain(USER_DATA);
        expect(userData).toContain(`export RL_ARTIFACT_URL='s3://rl-artifacts/releases/routeleader-0.1.0-linux-arm64.tar.gz' RL_ARTIFACT_SHA256='${"a".repeat(64)}'`);
        if (logical === "NatLaunchTemplate") {
          expect(userData).toContain(`export RL_ROUTE_TABLE_IDS='${privateTables.join(",")}'`);
          expect(userData).toContain("export RL_ROLE=nat RL_CLUSTER='demo-nat' RL_VPC_CIDR='10.42.0.0/16'");
          expect(userData).toContain("export RL_CONSUL_JOIN_TAG_KEY='routeleader:consul-server' RL_CONSUL_JOIN_TAG_VALUE='demo-nat'");
          expect(userData).toContain("export RL_SAME_AZ=''\n"); // the same-AZ pair is opt-in
        } else {
          expect(userData).toContain("export RL_ROLE=server RL_CLUSTER='demo-nat'");
        }
      }
    });

    it("security groups: NAT traffic only from the VPC CIDR, Consul ports only between nodes and servers, nothing from the internet", async () => {
      const natSg = output(nat, "NatSecurityGroupId");
      const sgs = (await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: "vpc-id", Values: [vpcId] }] }))).SecurityGroups!;
      const natGroup = sgs.find((g) => g.GroupId === natSg)!;
      const serverGroup = sgs.find((g) => g.GroupName !== "default" && g.GroupId !== natSg)!;
      const cidrRules = (perms: IpPermission[]) => perms.filter((p) => (p.IpRanges ?? []).length > 0).map((p) => `${p.IpProtocol} ${p.FromPort}-${p.ToPort} ${p.IpRanges!.map((r) => r.CidrIp).join(",")}`);
      const sgRules = (perms: IpPermission[]) =>
        perms.flatMap((p) => (p.UserIdGroupPairs ?? []).map((u) => `${p.IpProtocol} ${p.FromPort}-${p.ToPort} ${u.GroupId === natSg ? "nat" : u.GroupId === serverGroup.GroupId ? "servers" : u.GroupId}`));
      expect(cidrRules(natGroup.IpPermissions!).sort()).toEqual(["icmp -1--1 10.42.0.0/16", "tcp 0-8299 10.42.0.0/16", "tcp 8303-65535 10.42.0.0/16", "udp 0-8299 10.42.0.0/16", "udp 8303-65535 10.42.0.0/16"]);
      expect(sgRules(natGroup.IpPermissions!).sort()).toEqual(["tcp 8301-8301 nat", "tcp 8301-8301 servers", "udp 8301-8301 nat", "udp 8301-8301 servers"]);
      expect(cidrRules(serverGroup.IpPermissions!)).toEqual([]); // not even the VPC: UI via SSM port forwarding only
      expect(sgRules(serverGroup.IpPermissions!).sort()).toEqual(["tcp 8300-8301 nat", "tcp 8300-8302 servers", "udp 8301-8301 nat", "udp 8301-8302 servers"]);
    });

    it("known moto gaps: the 3 termination lifecycle hooks and the 3 agent alarms are skipped (listed with no logical id or type); everything else is created", async () => {
      const natResources = (await cf.send(new DescribeStackResourcesCommand({ StackName: nat.StackName }))).StackResources!;
      const template = loadTemplate("routeleader-nat.yaml");
      const declared = template.Resources as Record<string, { Type: string; Condition?: string }>;
      // The nested stack's parameters: 3 AZs, own servers, no secrets.
      const ctx = evaluateConditions(template, { ...RELEASE_PARAMS, PublicSubnetC: "subnet-c", ConsulMode: "servers", PrivateRouteTableIds: privateTables.join(",") });
      const active = Object.entries(declared).filter(([, r]) => !r.Condition || ctx.conditions![r.Condition]);
      const skippedByMoto = active.filter(([, r]) => MOTO_SKIPS.includes(r.Type));
      expect(skippedByMoto.map(([logical]) => logical)).toEqual(["NatTerminationHookA", "NatTerminationHookB", "NatTerminationHookC", "RouteWithoutHolderAlarm", "RepeatedFailoversAlarm", "AgentDownAlarm"]);
      const created = new Set(natResources.map((r) => r.LogicalResourceId).filter(Boolean));
      for (const [logical, r] of active) {
        if (MOTO_SKIPS.includes(r.Type)) expect(created, logical).not.toContain(logical);
        else expect(created, logical).toContain(logical);
      }
      // moto also lists resources whose Condition is false without a logical id.
      const conditionedOff = Object.keys(declared).length - active.length;
      expect(natResources.filter((r) => !r.LogicalResourceId)).toHaveLength(skippedByMoto.length + conditionedOff);
    });
  });

  it("demo VPC with 2 AZs: no third subnet, group or table", async () => {
    await moto.reset();
    const demo = await createAndWait("rl-demo2", await packagedDemo(), { ...RELEASE_PARAMS, ConsulSecurity: "insecure", ClusterName: "two-az", AzCount: "2", VpcCidr: "10.77.0.0/16", PublicSubnetCidrA: "10.77.0.0/24", PublicSubnetCidrB: "10.77.1.0/24", PrivateSubnetCidrA: "10.77.128.0/20", PrivateSubnetCidrB: "10.77.144.0/20" });
    const nat = (await cf.send(new DescribeStacksCommand({ StackName: output(demo, "NatStackId") }))).Stacks![0]!;
    expect(output(demo, "PrivateRouteTableIds").split(",")).toHaveLength(2);
    // ship: insecure only on purpose, and then the stack says so.
    expect(output(nat, "SecurityWarning")).toMatch(/^INSECURE: Consul runs without ACLs, gossip encryption or TLS/);
    const natGroups = output(nat, "NatGroupNames").split(",");
    expect(natGroups.map((g) => g.slice(-5))).toEqual(["nat-a", "nat-b"]);
    const subnets = (await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "vpc-id", Values: [output(demo, "VpcId")] }] }))).Subnets!;
    expect(subnets).toHaveLength(4);
    const consul = (await groups([output(nat, "ConsulServerGroupName")])).values().next().value!;
    expect(consul.VPCZoneIdentifier!.split(",")).toHaveLength(2);
  });

  it("the NAT stack alone in an existing VPC, joining an existing Consul cluster by tag: no servers, rules on the existing servers' group", async () => {
    await moto.reset();
    const vpc = (await ec2.send(new CreateVpcCommand({ CidrBlock: "10.88.0.0/16" }))).Vpc!;
    const a = (await ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.88.0.0/24", AvailabilityZone: "us-east-1a" }))).Subnet!;
    const b = (await ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.88.1.0/24", AvailabilityZone: "us-east-1b" }))).Subnet!;
    const existingSg = (await ec2.send(new CreateSecurityGroupCommand({ VpcId: vpc.VpcId, GroupName: "consul-servers", Description: "existing Consul servers" }))).GroupId!;
    const stack = await createAndWait("rl-existing", readFileSync(join(REPO, "cloudformation", "routeleader-nat.yaml"), "utf8"), {
      ...RELEASE_PARAMS,
      ClusterName: "shared-nat",
      VpcId: vpc.VpcId!,
      VpcCidr: "10.88.0.0/16",
      PublicSubnetA: a.SubnetId!,
      PublicSubnetB: b.SubnetId!,
      PrivateRouteTableTagKey: "routeleader/managed",
      ConsulMode: "existing",
      ExistingConsulTagKey: "consul-role",
      ExistingConsulTagValue: "server",
      ExistingConsulSecurityGroupId: existingSg,
      ConsulAclTokenParameter: "/routeleader/test/nat-token",
    });
    expect(stack.Outputs?.some((o) => o.OutputKey === "ConsulServerGroupName")).toBe(false);
    expect(stack.Outputs?.some((o) => o.OutputKey === "SecurityWarning")).toBe(false);
    const natGroups = output(stack, "NatGroupNames").split(",");
    expect(natGroups).toEqual(["rl-existing-nat-a", "rl-existing-nat-b"]);
    const all = await asg.send(new DescribeAutoScalingGroupsCommand({}));
    expect(all.AutoScalingGroups!.map((g) => g.AutoScalingGroupName).sort()).toEqual(natGroups);
    const natSg = output(stack, "NatSecurityGroupId");
    const existing = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [existingSg] }))).SecurityGroups![0]!;
    const fromNat = existing.IpPermissions!.filter((p) => p.UserIdGroupPairs?.some((u) => u.GroupId === natSg)).map((p) => `${p.IpProtocol} ${p.FromPort}-${p.ToPort}`);
    expect(fromNat.sort()).toEqual(["tcp 8300-8301", "udp 8301-8301"]);
    const resources = (await cf.send(new DescribeStackResourcesCommand({ StackName: "rl-existing" }))).StackResources!;
    const lt = resources.find((r) => r.LogicalResourceId === "NatLaunchTemplate")!.PhysicalResourceId!;
    const userData = decode((await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: lt }))).LaunchTemplateVersions![0]!.LaunchTemplateData!.UserData);
    expect(userData).toContain("export RL_CONSUL_JOIN_TAG_KEY='consul-role' RL_CONSUL_JOIN_TAG_VALUE='server'");
    expect(userData).toContain("export RL_ROUTE_TABLE_IDS=''");
    expect(userData).toContain("export RL_ROUTE_TABLE_TAG_KEY='routeleader/managed' RL_ROUTE_TABLE_TAG_VALUE='shared-nat'");
  });

  it("dataplane: the NAT stack with a same-AZ pair in its first AZ: two NATs in that subnet, RL_SAME_AZ in their user data, conntrackd's UDP 3780 only between NAT nodes", async () => {
    await moto.reset();
    const vpc = (await ec2.send(new CreateVpcCommand({ CidrBlock: "10.99.0.0/16" }))).Vpc!;
    const a = (await ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.99.0.0/24", AvailabilityZone: "us-east-1a" }))).Subnet!;
    const b = (await ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.99.1.0/24", AvailabilityZone: "us-east-1b" }))).Subnet!;
    const stack = await createAndWait("rl-pair", readFileSync(join(REPO, "cloudformation", "routeleader-nat.yaml"), "utf8"), {
      ...RELEASE_PARAMS,
      ClusterName: "pair-nat",
      VpcId: vpc.VpcId!,
      VpcCidr: "10.99.0.0/16",
      PublicSubnetA: a.SubnetId!,
      PublicSubnetB: b.SubnetId!,
      PrivateRouteTableIds: "rtb-0aaa1111aaaa1111a,rtb-0bbb2222bbbb2222b",
      ConsulMode: "existing",
      ExistingConsulTagKey: "consul-role",
      ExistingConsulTagValue: "server",
      ConsulAclTokenParameter: "/routeleader/test/nat-token",
      NodesPerAz: "2",
      SameAzPair: "A",
      SameAzRouteTableId: "rtb-0aaa1111aaaa1111a",
      SameAzPrivateIp: "10.99.0.200",
      SameAzEipAllocationId: "eipalloc-0123456789abcdef0",
    });
    const natGroups = output(stack, "NatGroupNames").split(",");
    const found = await groups(natGroups);
    const pairGroup = found.get("rl-pair-nat-a")!;
    expect(pairGroup.VPCZoneIdentifier).toBe(a.SubnetId);
    expect(pairGroup.Instances).toHaveLength(2);
    const resources = (await cf.send(new DescribeStackResourcesCommand({ StackName: "rl-pair" }))).StackResources!;
    const lt = resources.find((r) => r.LogicalResourceId === "NatLaunchTemplate")!.PhysicalResourceId!;
    const userData = decode((await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: lt }))).LaunchTemplateVersions![0]!.LaunchTemplateData!.UserData);
    expect(userData).toContain(`export RL_SAME_AZ='nat-rtb-0aaa1111aaaa1111a=${a.SubnetId}:10.99.0.200:eipalloc-0123456789abcdef0'\n`);
    expect(Buffer.byteLength(userData)).toBeLessThan(16 * 1024);
    const natSg = output(stack, "NatSecurityGroupId");
    const group = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [natSg] }))).SecurityGroups![0]!;
    const udp = group.IpPermissions!.filter((p) => p.IpProtocol === "udp").flatMap((p) => [
      ...(p.IpRanges ?? []).map((r) => `${p.FromPort}-${p.ToPort} ${r.CidrIp}`),
      ...(p.UserIdGroupPairs ?? []).map((u) => `${p.FromPort}-${p.ToPort} ${u.GroupId === natSg ? "nat" : u.GroupId}`),
    ]);
    expect(udp.sort()).toEqual(["0-3779 10.99.0.0/16", "3780-3780 nat", "3781-8299 10.99.0.0/16", "8301-8301 nat", "8303-65535 10.99.0.0/16"]);
  });
});
