import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { AutoScalingClient, DescribeAutoScalingGroupsCommand } from "@aws-sdk/client-auto-scaling";
import { CloudFormationClient, CreateStackCommand, DescribeStackResourcesCommand, DescribeStacksCommand, type Parameter, type Stack } from "@aws-sdk/client-cloudformation";
import { CreateRouteTableCommand, CreateSubnetCommand, CreateTagsCommand, CreateVpcCommand, DescribeInstancesCommand, DescribeLaunchTemplateVersionsCommand, EC2Client, type Instance } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { startAemm, type StartedAemm } from "../support/aemm.js";
import { AwsCli } from "../support/aws-cli.js";
import { binaryPath } from "../support/binaries.js";
import { BootstrapSandbox, mutatingCalls, type RunResult } from "../support/bootstrap-sandbox.js";
import { REPO } from "../support/cfn.js";
import { makeTlsMaterial, type TlsMaterial } from "../support/consul-secure.js";
import { identityOf, readRoute } from "../support/ec2-world.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { assertNetnsAllowed, createTopology, destroyTopology, nsWrap, type NetnsNode, type Topology } from "../support/netns.js";
import { NamespaceForwarder } from "../support/ns-forward.js";
import { ManagedProcess, waitUntil } from "../support/process.js";
import { buildRelease, sha256Of, type ReleaseArtifact } from "../support/release.js";
import { s3Upload } from "../support/s3.js";

/**
 * The acceptance launch (issue #15), README "Deploy" step by step: `npm run release` uploaded to
 * moto S3 with a Consul copy, the Consul secrets in SSM, the demo stack (demo-vpc.yaml, 3 AZs,
 * nesting routeleader-nat.yaml, secure defaults) created by moto's CloudFormation, and the user
 * data moto hands back run on three Consul servers and three NAT instances, each a network
 * namespace (its own 127.0.0.1, its own address on a shared bridge). Every `aws` call of the
 * scripts goes to moto (test/support/aws-cli.ts). The test plays systemd: when a script starts a
 * unit, the test starts what the unit would run, from the files the scripts wrote, and runs the
 * servers' credentials timer every 2 s (10 s on an instance). One liberty, because nothing here
 * is AWS: Consul's retry_join by EC2 tag cannot reach moto (go-discover talks to AWS itself), so
 * the servers' addresses replace it. The "internet" the egress check pings is the bridge's hub.
 */

const run = promisify(execFile);
const BUCKET = "rl-launch";
const CLUSTER = "launch";
const STACK = "rl-launch";
const CHECK_HOSTS = ["1.1.1.1", "8.8.8.8", "9.9.9.9"];
const PYTHON = () => join(binaryPath("moto"), "..", "python");

const world = {} as {
  artifact: ReleaseArtifact;
  moto: StartedMoto;
  aws: AwsCli;
  ec2: EC2Client;
  tls: TlsMaterial;
  topology: Topology;
  forwarder: NamespaceForwarder;
  tables: string[];
  natOutputs: Record<string, string>;
  servers: Instance[];
  nats: Instance[];
  userData: { server: string; nat: string };
  consulZipSha: string;
};
const processes: ManagedProcess[] = [];
const aemms: StartedAemm[] = [];
const sandboxes: BootstrapSandbox[] = [];

/** SSM parameters in moto, through the sandboxes' aws stub (the SDK's SSM client is not a dependency). */
async function putParameters(params: Record<string, [type: string, value: string]>): Promise<void> {
  for (const [name, [type, value]] of Object.entries(params)) await world.aws.ok("ssm", "put-parameter", "--name", name, "--type", type, "--value", value);
}

async function ssmNames(prefix: string): Promise<string[]> {
  const out = await world.aws.ok("ssm", "get-parameters-by-path", "--path", prefix, "--recursive", "--query", "Parameters[].Name", "--output", "text");
  return out.split(/\s+/).filter(Boolean).sort();
}

beforeAll(async () => {
  assertNetnsAllowed();
  world.artifact = await buildRelease();
  world.moto = await startMoto();
  world.aws = await AwsCli.start(world.moto.endpoint);
  world.ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: world.moto.endpoint, maxAttempts: 1 });
  world.tls = makeTlsMaterial();

  const consul = binaryPath("consul");
  const zip = join(world.artifact.dir, "consul.zip");
  await run(PYTHON(), ["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[2], 'consul')", zip, consul]);
  world.consulZipSha = sha256Of(zip);
  const good = readFileSync(world.artifact.tarball);
  const tampered = Buffer.from(good);
  tampered[tampered.length - 9] = tampered[tampered.length - 9]! ^ 0xff;
  await s3Upload(world.moto.endpoint, BUCKET, { [`releases/${world.artifact.fileName}`]: good, "releases/tampered.tar.gz": tampered, "mirror/consul.zip": readFileSync(zip) });
  await putParameters({
    "/rl/launch/gossip-key": ["SecureString", "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="],
    "/rl/launch/ca": ["String", readFileSync(world.tls.caFile, "utf8").trim()],
    "/rl/launch/ca-key": ["SecureString", readFileSync(join(world.tls.dir, "consul-agent-ca-key.pem"), "utf8").trim()],
    "/rl/launch/management-token": ["SecureString", "0c8d5e2a-1f3b-4c6d-8e9f-a0b1c2d3e4f5"],
  });

  // README "Deploy" step 4: `aws cloudformation package` (the nested template to S3), then the
  // demo stack with 3 AZs and the secure defaults, created by moto's CloudFormation.
  await s3Upload(world.moto.endpoint, "rl-launch-templates", { "routeleader-nat.yaml": readFileSync(join(REPO, "cloudformation", "routeleader-nat.yaml")) });
  const demo = readFileSync(join(REPO, "cloudformation", "demo-vpc.yaml"), "utf8");
  const packaged = demo.replace("TemplateURL: ./routeleader-nat.yaml", "TemplateURL: https://s3.amazonaws.com/rl-launch-templates/routeleader-nat.yaml");
  expect(packaged).not.toBe(demo);
  const cf = new CloudFormationClient({ ...EMULATOR_AWS, endpoint: world.moto.endpoint, maxAttempts: 1 });
  const parameters: Record<string, string> = {
    ClusterName: CLUSTER,
    AzCount: "3",
    ArtifactBucket: BUCKET,
    ArtifactKey: `releases/${world.artifact.fileName}`,
    ArtifactSha256: world.artifact.sha256,
    ConsulBinaryUrl: `s3://${BUCKET}/mirror/consul.zip`,
    ConsulBinarySha256: world.consulZipSha,
    ConsulGossipKeyParameter: "/rl/launch/gossip-key",
    ConsulCaParameter: "/rl/launch/ca",
    ConsulCaKeyParameter: "/rl/launch/ca-key",
    ConsulManagementTokenParameter: "/rl/launch/management-token",
  };
  await cf.send(new CreateStackCommand({
    StackName: STACK,
    TemplateBody: packaged,
    Parameters: Object.entries(parameters).map(([k, v]): Parameter => ({ ParameterKey: k, ParameterValue: v })),
    Capabilities: ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
  }));
  const describe = async (name: string) => (await cf.send(new DescribeStacksCommand({ StackName: name }))).Stacks?.[0];
  const stack = await waitUntil("the demo stack in moto", async () => {
    const s = await describe(STACK);
    if (!s || s.StackStatus?.endsWith("IN_PROGRESS")) return undefined;
    if (s.StackStatus !== "CREATE_COMPLETE") throw new Error(`${s.StackStatus} ${s.StackStatusReason ?? ""}`);
    return s;
  }, { timeoutMs: 120_000, intervalMs: 250 });
  const output = (s: Stack | undefined, key: string) => s?.Outputs?.find((o) => o.OutputKey === key)?.OutputValue ?? "";
  const nat = await describe(output(stack, "NatStackId"));
  expect(nat?.StackStatus).toBe("CREATE_COMPLETE");
  world.natOutputs = Object.fromEntries((nat?.Outputs ?? []).map((o) => [o.OutputKey!, o.OutputValue!]));
  world.tables = output(stack, "PrivateRouteTableIds").split(",");
  const resources = (await cf.send(new DescribeStackResourcesCommand({ StackName: nat!.StackName }))).StackResources!;
  const userDataOf = async (logical: string) => {
    const id = resources.find((r) => r.LogicalResourceId === logical)!.PhysicalResourceId!;
    const v = (await world.ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: id }))).LaunchTemplateVersions![0]!;
    return Buffer.from(v.LaunchTemplateData!.UserData!, "base64").toString("utf8");
  };
  world.userData = { server: await userDataOf("ConsulServerLaunchTemplate"), nat: await userDataOf("NatLaunchTemplate") };
  cf.destroy();

  // The instances the groups launched (moto starts them; nothing runs on them but what we run).
  const asg = new AutoScalingClient({ ...EMULATOR_AWS, endpoint: world.moto.endpoint, maxAttempts: 1 });
  const groupInstances = async (name: string) => {
    const g = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }))).AutoScalingGroups![0]!;
    const ids = g.Instances!.map((i) => i.InstanceId!);
    const out = await world.ec2.send(new DescribeInstancesCommand({ InstanceIds: ids }));
    return out.Reservations!.flatMap((r) => r.Instances!);
  };
  world.servers = await groupInstances(world.natOutputs.ConsulServerGroupName!);
  world.nats = [];
  for (const g of world.natOutputs.NatGroupNames!.split(",")) world.nats.push(...(await groupInstances(g)));
  asg.destroy();
  // moto drops tags of CloudFormation-made tables; the route-write condition needs them on AWS.
  await world.ec2.send(new CreateTagsCommand({ Resources: world.tables, Tags: [{ Key: "routeleader:cluster", Value: CLUSTER }] }));

  world.topology = createTopology({ hosts: 3, servers: 3 });
  // The internet, as far as the egress check (CheckHost's default 1.1.1.1, 8.8.8.8, 9.9.9.9)
  // sees it: the hub answers those addresses for the NAT hosts.
  for (const host of CHECK_HOSTS) execFileSync("ip", ["-n", world.topology.hub.ns, "addr", "add", `${host}/32`, "dev", "lo"]);
  for (const h of world.topology.hosts) for (const host of CHECK_HOSTS) execFileSync("ip", ["-n", h.ns, "route", "add", `${host}/32`, "via", world.topology.hub.addr]);
}, 600_000);

afterAll(async () => {
  for (const p of processes.reverse()) await p.stop().catch(() => undefined);
  await Promise.all(aemms.map((a) => a.stop().catch(() => undefined)));
  await world.forwarder?.stop();
  if (world.topology) destroyTopology(world.topology);
  world.ec2?.destroy();
  await world.aws?.stop();
  await world.moto?.stop();
  await Promise.all(sandboxes.map((sb) => rm(sb.dir, { recursive: true, force: true })));
  if (world.tls) await rm(world.tls.dir, { recursive: true, force: true });
  if (world.artifact) await rm(world.artifact.dir, { recursive: true, force: true });
});

interface Booted {
  node: NetnsNode;
  instance: Instance;
  sb: BootstrapSandbox;
  launch: Promise<RunResult>;
}

/** An instance: its namespace, its metadata mock, the user data run in a sandbox, and systemd played. */
async function boot(role: "server" | "nat", node: NetnsNode, instance: Instance, serverAddrs: string[]): Promise<Booted> {
  const identity = { ...identityOf(instance), privateIp: node.addr };
  const aemm = await startAemm(identity, { imdsv2Only: true });
  aemms.push(aemm);
  await world.forwarder.into(node.ns, [Number(new URL(world.moto.endpoint).port), Number(new URL(aemm.endpoint).port)]);
  const sb = new BootstrapSandbox({ aws: world.aws, sharedSsm: true, wrap: ["/usr/sbin/ip", "netns", "exec", node.ns] });
  sandboxes.push(sb);
  sb.console();
  const file = join(sb.dir, "user-data");
  writeFileSync(file, role === "server" ? world.userData.server : world.userData.nat, { mode: 0o755 });
  const launch = sb.run(file, { RL_IMDS_ENDPOINT: aemm.endpoint, RL_HEALTH_TIMEOUT: "240", RL_CREDENTIALS_TIMEOUT: "180" });
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: sb.dir,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL: world.moto.endpoint,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: aemm.endpoint,
  };
  const started = new Set<string>();
  const play = async () => {
    const active = readFileSync(join(sb.state, "active"), "utf8").split("\n");
    if (active.includes("consul.service") && !started.has("consul")) {
      started.add("consul");
      // The unit's command, with the sandbox's paths and the servers' addresses for retry_join.
      const dir = join(sb.dir, "consul.d");
      mkdirSync(dir, { recursive: true });
      const hcl = sb
        .read("/etc/consul.d/consul.hcl")
        .replaceAll('"/etc/consul.d/', `"${sb.root}/etc/consul.d/`)
        .replace('data_dir = "/opt/consul"', `data_dir = "${sb.root}/opt/consul"`)
        .replace(/^retry_join = .*$/m, `retry_join = ${JSON.stringify(serverAddrs)}`);
      writeFileSync(join(dir, "consul.hcl"), hcl);
      processes.push(new ManagedProcess("ip", [...nsWrap(node.ns).slice(1), `${sb.root}/usr/local/bin/consul`, "agent", `-config-dir=${dir}`], { name: `consul ${node.role}`, env: { ...process.env, CHECKPOINT_DISABLE: "1" }, keepLines: 300 }));
    }
    if (active.includes("routeleader-nat.service") && !started.has("nat")) {
      started.add("nat");
      execFileSync("ip", [...nsWrap(node.ns).slice(1), "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
    if (active.includes("routeleader.service") && !started.has("agent")) {
      started.add("agent");
      const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
      cfg.consul.caFile = join(sb.root, cfg.consul.caFile);
      cfg.consul.tokenFile = join(sb.root, cfg.consul.tokenFile);
      const file = join(sb.dir, "routeleader.yaml");
      writeFileSync(file, toYaml(cfg));
      const cli = join(sb.root, readlinkSync(join(sb.root, "opt/routeleader/current")), "dist/agent/cli.js");
      processes.push(new ManagedProcess("ip", [...nsWrap(node.ns).slice(1), process.execPath, cli, "run", "--config", file], { name: `routeleader ${node.role}`, cwd: sb.dir, env, keepLines: 300 }));
    }
    if (active.includes("routeleader-credentials.timer") && !started.has("credentials")) {
      started.add("credentials");
      const unit = sb.read("/etc/systemd/system/routeleader-credentials.service");
      const script = join(sb.root, /^ExecStart=\/bin\/bash (.*)$/m.exec(unit)![1]!);
      timers.push({ sb, script, node });
    }
  };
  const timer = setInterval(() => void play().catch(() => undefined), 200);
  void launch.finally(() => clearInterval(timer));
  return { node, instance, sb, launch };
}

/** routeleader-credentials.timer, played: the servers' script every 2 s while the test runs. */
const timers: { sb: BootstrapSandbox; script: string; node: NetnsNode }[] = [];
let timersRunning = true;
async function runTimers(): Promise<void> {
  let n = 0;
  while (timersRunning && n++ < 600) {
    for (const t of timers) await t.sb.run(t.script, {}, { log: join(t.sb.dir, "credentials.log") }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

const signalsOf = (res: RunResult) => res.calls.filter((c) => c.program === "aws" && c.args[0] === "cloudformation").map((c) => `${c.args[c.args.indexOf("--logical-resource-id") + 1]} ${c.args[c.args.indexOf("--status") + 1]}`);

describe("ship: launch of the stack as moto's CloudFormation renders it, 3 Consul servers and 3 NAT instances in network namespaces", () => {
  let servers: Booted[];
  let nats: Booted[];

  beforeAll(async () => {
    world.forwarder = new NamespaceForwarder();
    const serverAddrs = world.topology.servers.map((s) => s.addr);
    void runTimers();
    servers = await Promise.all(world.topology.servers.map((n, i) => boot("server", n, world.servers[i]!, serverAddrs)));
    nats = await Promise.all(world.topology.hosts.map((n, i) => boot("nat", n, world.nats[i]!, serverAddrs)));
  }, 120_000);
  afterAll(() => {
    timersRunning = false;
  });

  it("ship: the stack launched 3 servers and one NAT instance per AZ, and its user data carries the secure settings", () => {
    expect(world.servers).toHaveLength(3);
    expect(world.nats).toHaveLength(3);
    expect(world.userData.nat).toContain("export RL_CONSUL_SECURITY='secure' RL_CA_PARAM='/rl/launch/ca'");
    expect(world.userData.server).toContain("RL_MANAGEMENT_TOKEN_PARAM='/rl/launch/management-token'");
    expect(world.userData.nat).not.toContain("management-token");
    expect(world.userData.nat).toContain("export RL_SAME_AZ=''\n"); // no same-AZ pair unless asked for
    expect(Buffer.byteLength(world.userData.nat)).toBeLessThan(16 * 1024);
    expect(Buffer.byteLength(world.userData.server)).toBeLessThan(16 * 1024);
  });

  it("ship: every server forms the quorum and signals SUCCESS; every NAT instance gets its own credentials, joins over TLS, runs the agent and signals SUCCESS", async () => {
    const results = await Promise.all([...servers, ...nats].map((b) => b.launch));
    results.forEach((res, i) => {
      const b = [...servers, ...nats][i]!;
      expect(res.code, `${b.node.role}: ${res.output}\n${processes.map((p) => `--- ${p.name}\n${p.output(15)}`).join("\n")}`).toBe(0);
    });
    expect(results.slice(0, 3).map(signalsOf)).toEqual([["ConsulServerGroup SUCCESS"], ["ConsulServerGroup SUCCESS"], ["ConsulServerGroup SUCCESS"]]);
    expect(results.slice(3).map(signalsOf)).toEqual([["NatGroupA SUCCESS"], ["NatGroupB SUCCESS"], ["NatGroupC SUCCESS"]]);
    // One token, certificate and key per NAT instance, and nothing else, in SSM.
    expect(await ssmNames(`/routeleader/${CLUSTER}/nodes`)).toEqual(world.nats.flatMap((i) => ["cert", "key", "token"].map((p) => `/routeleader/${CLUSTER}/nodes/${i.InstanceId}/${p}`)).sort());
    // The management token and CA key stayed on the servers.
    for (const n of nats) {
      // Without a same-AZ pair: no secondary address, no conntrackd, MASQUERADE to the node's own address.
      const routes = parseYaml(n.sb.read("/etc/routeleader/routeleader.yaml")).routes as { sameAz?: unknown }[];
      expect(routes).toHaveLength(world.tables.length);
      expect(routes.filter((r) => r.sameAz !== undefined)).toEqual([]);
      expect(n.sb.exists("/etc/routeleader/conntrackd.conf")).toBe(false);
      expect(n.sb.exists("/etc/consul.d/management-token")).toBe(false);
      expect(n.sb.exists("/etc/consul.d/tls/ca-key.pem")).toBe(false);
    }
  }, 300_000);

  it("ship: the quorum runs with the secure defaults: 3 voters, 6 members in the catalog sharing one gossip key, ACLs deny by default, TLS verified both ways", async () => {
    const server = servers[0]!;
    const mgmt = server.sb.read("/etc/consul.d/management-token").trim();
    const api = (path: string) =>
      JSON.parse(execFileSync("ip", [...nsWrap(server.node.ns).slice(1), "curl", "-fsS", "--cacert", join(server.sb.root, "etc/consul.d/tls/ca.pem"), "-H", `X-Consul-Token: ${mgmt}`, `https://127.0.0.1:8501${path}`], { encoding: "utf8" }));
    const raft = api("/v1/operator/raft/configuration") as { Servers: { Voter: boolean; Address: string }[] };
    expect(raft.Servers.filter((s) => s.Voter).map((s) => s.Address.split(":")[0]).sort()).toEqual(world.topology.servers.map((s) => s.addr).sort());
    const members = api("/v1/agent/members") as { Name: string; Status: number }[];
    expect(members.filter((m) => m.Status === 1).map((m) => m.Name).sort()).toEqual([...world.servers, ...world.nats].map((i) => i.InstanceId).sort());
    // Each node registered itself in the catalog: the NAT nodes with their own token (policy: nodes read only, plus a node identity).
    const nodes = api("/v1/catalog/nodes") as { Node: string }[];
    expect(nodes.map((n) => n.Node).sort()).toEqual([...world.servers, ...world.nats].map((i) => i.InstanceId).sort());
    const lan = (api("/v1/operator/keyring") as { WAN: boolean; Keys: Record<string, number>; NumNodes: number }[]).find((k) => !k.WAN)!;
    expect(lan.Keys).toEqual({ "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=": 6 });
    const self = api("/v1/agent/self") as { DebugConfig: Record<string, any> };
    expect(self.DebugConfig.ACLsEnabled).toBe(true);
    expect(self.DebugConfig.ACLResolverSettings.ACLDefaultPolicy).toBe("deny");
    expect(self.DebugConfig.TLS.InternalRPC).toMatchObject({ VerifyIncoming: true, VerifyOutgoing: true, VerifyServerHostname: true });
    // Without a token, nothing: the anonymous token gets the default deny.
    const anonymous = execFileSync("ip", [...nsWrap(server.node.ns).slice(1), "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", join(server.sb.root, "etc/consul.d/tls/ca.pem"), "-X", "PUT", "--data", "x", `https://127.0.0.1:8501/v1/kv/routeleader/${CLUSTER}/anonymous`], { encoding: "utf8" });
    expect(anonymous).toBe("403");
  });

  it("ship: the agents elect a holder per table and point each table's default route at a NAT instance", async () => {
    const natIds = new Set(world.nats.map((i) => i.InstanceId));
    for (const table of world.tables) {
      const route = await waitUntil(`0.0.0.0/0 in ${table}`, async () => {
        const r = await readRoute(world.ec2, table, "0.0.0.0/0");
        return r?.InstanceId && natIds.has(r.InstanceId) ? r : undefined;
      }, { timeoutMs: 90_000, intervalMs: 500 });
      expect(natIds.has(route.InstanceId)).toBe(true);
    }
  });

  it("ship: a NAT node's memory: the agent holding its route and the Consul client agent, measured (RSS) for the instance type", () => {
    const rssMib = (name: string) => {
      const pids = processes.filter((p) => p.name === name && !p.hasExited).map((p) => p.pid!);
      expect(pids, name).toHaveLength(1);
      return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pids[0]}/status`, "utf8"))![1]) / 1024;
    };
    const figures = nats.map((n) => ({ node: n.node.role, agent: rssMib(`routeleader ${n.node.role}`), consul: rssMib(`consul ${n.node.role}`) }));
    console.log(`NAT node RSS (MiB): ${figures.map((f) => `${f.node} agent ${f.agent.toFixed(0)} + consul ${f.consul.toFixed(0)}`).join("; ")}`);
    // t4g.micro (1 GiB), the default: both together well under half of it.
    for (const f of figures) expect(f.agent + f.consul, f.node).toBeLessThan(400);
  });

  it("ship: a NAT node's token may write its cluster's keys but is refused outside its prefix and cannot read the ACL system", async () => {
    const nat = nats[0]!;
    const token = nat.sb.read("/etc/routeleader/consul-token").trim();
    const curl = (method: string, path: string) =>
      execFileSync("ip", [...nsWrap(nat.node.ns).slice(1), "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", join(nat.sb.root, "etc/consul.d/tls/ca.pem"), "-H", `X-Consul-Token: ${token}`, "-X", method, "--data", "x", `https://127.0.0.1:8501${path}`], { encoding: "utf8" });
    expect(curl("PUT", `/v1/kv/routeleader/${CLUSTER}/probe`)).toBe("200");
    expect(curl("PUT", "/v1/kv/elsewhere/probe")).toBe("403");
    expect(curl("GET", "/v1/acl/tokens")).toBe("403");
    // And plain HTTP is not served at all.
    expect(() => execFileSync("ip", [...nsWrap(nat.node.ns).slice(1), "curl", "-sS", "--max-time", "3", "http://127.0.0.1:8500/v1/status/leader"], { stdio: "pipe" })).toThrow();
  });

  it("ship: a tampered artifact (sha256 differs) makes its instance signal FAILURE and install nothing", async () => {
    const instance = world.nats[0]!;
    const aemm = await startAemm(identityOf(instance), { imdsv2Only: true });
    aemms.push(aemm);
    const sb = new BootstrapSandbox({ aws: world.aws, sharedSsm: true });
    sandboxes.push(sb);
    sb.console();
    const file = join(sb.dir, "user-data");
    writeFileSync(file, world.userData.nat.replace(`s3://${BUCKET}/releases/${world.artifact.fileName}`, `s3://${BUCKET}/releases/tampered.tar.gz`), { mode: 0o755 });
    const res = await sb.run(file, { RL_IMDS_ENDPOINT: aemm.endpoint });
    expect(res.code).toBe(1);
    expect(sb.console()).toContain("sha256 mismatch for s3://rl-launch/releases/tampered.tar.gz");
    expect(signalsOf(res)).toEqual(["NatGroupA FAILURE"]);
    expect(mutatingCalls(res.calls)).toEqual([]);
    expect([...sb.snapshot().keys()]).toEqual(["/dev/", "/dev/console", "/var/", "/var/tmp/"]);
  });
});

describe("dataplane: the stack with a same-AZ pair (SameAzPair): the NAT user data moto renders carries RL_SAME_AZ, and the bootstrap it runs makes a pair member SNAT to the pair's address and sync with conntrackd", () => {
  const PAIR_IP = "10.61.0.200";
  const EIP = "eipalloc-0123456789abcdef0";
  let userData: string;
  let member: Instance;
  let peer: Instance;
  let table: string;

  beforeAll(async () => {
    // The NAT stack alone, in a VPC of its own, joining an existing Consul cluster; the pair in its first AZ.
    const vpc = (await world.ec2.send(new CreateVpcCommand({ CidrBlock: "10.61.0.0/16" }))).Vpc!;
    const a = (await world.ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.61.0.0/24", AvailabilityZone: "us-east-1a" }))).Subnet!;
    const b = (await world.ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.61.1.0/24", AvailabilityZone: "us-east-1b" }))).Subnet!;
    table = (await world.ec2.send(new CreateRouteTableCommand({ VpcId: vpc.VpcId }))).RouteTable!.RouteTableId!;
    const cf = new CloudFormationClient({ ...EMULATOR_AWS, endpoint: world.moto.endpoint, maxAttempts: 1 });
    const parameters: Record<string, string> = {
      ClusterName: "pair",
      VpcId: vpc.VpcId!,
      VpcCidr: "10.61.0.0/16",
      PublicSubnetA: a.SubnetId!,
      PublicSubnetB: b.SubnetId!,
      PrivateRouteTableIds: table,
      ArtifactBucket: BUCKET,
      ArtifactKey: `releases/${world.artifact.fileName}`,
      ArtifactSha256: world.artifact.sha256,
      ConsulBinaryUrl: `s3://${BUCKET}/mirror/consul.zip`,
      ConsulBinarySha256: world.consulZipSha,
      ConsulMode: "existing",
      ExistingConsulTagKey: "consul-role",
      ExistingConsulTagValue: "server",
      ConsulSecurity: "insecure",
      NodesPerAz: "2",
      SameAzPair: "A",
      SameAzRouteTableId: table,
      SameAzPrivateIp: PAIR_IP,
      SameAzEipAllocationId: EIP,
    };
    await cf.send(new CreateStackCommand({ StackName: "rl-pair", TemplateBody: readFileSync(join(REPO, "cloudformation", "routeleader-nat.yaml"), "utf8"), Parameters: Object.entries(parameters).map(([k, v]): Parameter => ({ ParameterKey: k, ParameterValue: v })), Capabilities: ["CAPABILITY_IAM"] }));
    await waitUntil("the pair stack in moto", async () => {
      const s = (await cf.send(new DescribeStacksCommand({ StackName: "rl-pair" }))).Stacks?.[0];
      if (!s || s.StackStatus?.endsWith("IN_PROGRESS")) return undefined;
      if (s.StackStatus !== "CREATE_COMPLETE") throw new Error(`${s.StackStatus} ${s.StackStatusReason ?? ""}`);
      return s;
    }, { timeoutMs: 120_000, intervalMs: 250 });
    const resources = (await cf.send(new DescribeStackResourcesCommand({ StackName: "rl-pair" }))).StackResources!;
    const lt = resources.find((r) => r.LogicalResourceId === "NatLaunchTemplate")!.PhysicalResourceId!;
    userData = Buffer.from((await world.ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: lt }))).LaunchTemplateVersions![0]!.LaunchTemplateData!.UserData!, "base64").toString("utf8");
    cf.destroy();
    const asg = new AutoScalingClient({ ...EMULATOR_AWS, endpoint: world.moto.endpoint, maxAttempts: 1 });
    const ids = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: ["rl-pair-nat-a"] }))).AutoScalingGroups![0]!.Instances!.map((i) => i.InstanceId!);
    asg.destroy();
    [member, peer] = (await world.ec2.send(new DescribeInstancesCommand({ InstanceIds: ids }))).Reservations!.flatMap((r) => r.Instances!).sort((x, y) => (x.PrivateIpAddress! < y.PrivateIpAddress! ? -1 : 1)) as [Instance, Instance];
  }, 180_000);

  it("the user data passes the pair to the bootstrap, which writes the route's eip and sameAz, SNATs to the pair's address, installs conntrackd and points it at the peer NAT", async () => {
    expect(userData).toContain(`export RL_SAME_AZ='nat-${table}=${member.SubnetId}:${PAIR_IP}:${EIP}'\n`);
    expect(member.SubnetId).toBe(peer.SubnetId);
    const identity = identityOf(member);
    const aemm = await startAemm(identity, { imdsv2Only: true });
    aemms.push(aemm);
    const sb = new BootstrapSandbox({ aws: world.aws, sharedSsm: true });
    sandboxes.push(sb);
    sb.console();
    // The instance's interfaces, as /sys/class/net shows them.
    for (const [dev, mac] of [["lo", "00:00:00:00:00:00"], ["ens5", identity.mac]] as const) {
      mkdirSync(join(sb.root, "sys/class/net", dev), { recursive: true });
      writeFileSync(join(sb.root, "sys/class/net", dev, "address"), `${mac}\n`);
    }
    const file = join(sb.dir, "user-data");
    writeFileSync(file, userData, { mode: 0o755 });
    // No Consul to join here: the launch stops at the health wait, after the bootstrap succeeded.
    const res = await sb.run(file, { RL_IMDS_ENDPOINT: aemm.endpoint, RL_HEALTH_TIMEOUT: "0" });
    expect(res.code, res.output).toBe(1);
    expect(sb.console()).toContain("not healthy after 0 s");
    expect(sb.console()).not.toContain("bootstrap:");
    const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
    expect(cfg.routes).toHaveLength(1);
    expect(cfg.routes[0]).toMatchObject({ name: `nat-${table}`, table: { id: table }, eip: EIP, sameAz: { subnet: member.SubnetId, privateIp: PAIR_IP } });
    const line = (c: { program: string; args: string[] }) => [c.program, ...c.args].join(" ");
    expect(res.calls.filter((c) => c.program === "iptables" && c.args.includes("-A")).map(line)).toEqual([`iptables -t nat -A POSTROUTING -s 10.61.0.0/16 ! -d 10.61.0.0/16 -j SNAT --to-source ${PAIR_IP}`]);
    expect(res.calls.filter((c) => c.program === "dnf").map(line)[0]).toContain("conntrack-tools");
    expect(sb.read("/etc/routeleader/conntrackd.conf")).toContain(`IPv4_Destination_Address ${peer.PrivateIpAddress}`);
  }, 180_000);
});
