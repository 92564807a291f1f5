import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DescribeInstanceAttributeCommand, EC2Client, ModifyInstanceAttributeCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { EXIT } from "../../agent/exit-codes.js";
import { startAemm, type StartedAemm } from "../support/aemm.js";
import { runCli, spawnCli } from "../support/agent-cli.js";
import { consulHttp, startConsulDev, type StartedConsul } from "../support/consul.js";
import { startSecureConsul, type ConsulWritable, type StartedSecureConsul } from "../support/consul-secure.js";
import { createSubnet, createTable, createVpc, identityOf, runInstance } from "../support/ec2-world.js";
import { startFaultProxy, type InjectedError, type StartedFaultProxy } from "../support/fault-proxy.js";
import { startHttpRelay, type StartedHttpRelay } from "../support/http-relay.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { freePort } from "../support/ports.js";

/**
 * Bad input, end to end: the real CLI (`node --import tsx agent/cli.ts run --config FILE`)
 * against real Consul, moto behind the fault proxy, and the metadata mock. Every case must
 * end with its documented exit code and a message naming the problem, having written
 * nothing: no mutating EC2 call forwarded to moto (the proxy's log, by caller), and nothing
 * in Consul (no KV under routeleader/, no service, no session; read over raw HTTP).
 */

const MANAGEMENT_TOKEN = "0c4bb0b5-5a4e-4bd6-9a53-9b1d4d0b7c11";

let moto: StartedMoto;
let proxy: StartedFaultProxy;
let admin: EC2Client;
let consul: StartedConsul;
let aclConsul: StartedSecureConsul;
let aemm: StartedAemm;
let aemmV1: StartedAemm;
const relays: StartedHttpRelay[] = [];
/** Every request an agent sends the dev Consul agent passes here: a refused start must send no write at all. */
let consulRelay: StartedHttpRelay;
let dir: string;
let selfId: string;
let ownTable: string;
let otherVpcTable: string;
let unassociatedSubnet: string;
let closedPort: number;

interface Case {
  /** Also the fault proxy's caller name for the case's EC2 calls. */
  id: string;
  config?: (base: Record<string, unknown>) => Record<string, unknown> | string;
  args?: (configFile: string) => string[];
  env?: Record<string, string>;
  /** Injected for the case's duration: every call of the action fails with this. */
  deny?: { action: string; error?: InjectedError };
  /** Which Consul must stay untouched (default: the dev agent). */
  consulOf?: () => ConsulView;
  code: number;
  message: RegExp;
  /** How long the agent may run before the case fails for not exiting (default 60 s). */
  timeoutMs?: number;
}

/** Consul as the test sees it: what an agent could have written, and a way back to clean. */
interface ConsulView {
  writable(): Promise<ConsulWritable>;
  /** Removes what an earlier (failed) case left, so each case is judged on its own writes. */
  reset(): Promise<void>;
}

const UNAUTHORIZED: InjectedError = { status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation." };
const ACCESS_DENIED: InjectedError = { status: 403, code: "AccessDenied", message: "User is not authorized to perform this action." };

/** The dev agent's writable state, read over raw HTTP. */
function devWritable(agent: StartedConsul): ConsulView {
  return {
    async reset() {
      for (const id of Object.keys((await agent.get<Record<string, unknown>>("/v1/agent/services")) ?? {})) await agent.put(`/v1/agent/service/deregister/${id}`);
      for (const session of (await agent.get<{ ID: string }[]>("/v1/session/list")) ?? []) await agent.put(`/v1/session/destroy/${session.ID}`);
      await consulHttp("DELETE", `${agent.httpAddr}/v1/kv/routeleader/?recurse`);
    },
    async writable(): Promise<ConsulWritable> {
      const kv = await consulHttp("GET", `${agent.httpAddr}/v1/kv/routeleader/?recurse`).then(
        (r) => (r.json as { Key: string; ModifyIndex: number }[]).map((e) => `${e.Key}@${e.ModifyIndex}`),
        (err: Error) => {
          if (/HTTP 404/.test(err.message)) return [];
          throw err;
        },
      );
      const services = Object.keys((await agent.get<Record<string, unknown>>("/v1/agent/services")) ?? {});
      const sessions = ((await agent.get<{ ID: string }[]>("/v1/session/list")) ?? []).map((x) => x.ID);
      return { kv, services, sessions };
    },
  };
}

function baseConfig(caller: string): Record<string, unknown> {
  return {
    cluster: "bad",
    region: EMULATOR_AWS.region,
    consul: { address: consulRelay.endpoint },
    imds: { endpoint: aemm.endpoint, timeout: "500ms" },
    aws: { endpoint: proxy.endpointFor(caller) },
    // The realistic first boot: the instance's source/dest check is still on, so `fix` would write.
    sourceDestCheck: "fix",
    discovery: { enabled: false },
    lifecycle: { watch: false },
    http: { listen: "" },
    routes: [{ name: "default-v4", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0" }],
  };
}

function writeConfig(id: string, content: Record<string, unknown> | string): string {
  const file = join(dir, `${id}.yaml`);
  writeFileSync(file, typeof content === "string" ? content : stringify(content));
  return file;
}

async function sourceDestCheckOn(): Promise<boolean> {
  const out = await admin.send(new DescribeInstanceAttributeCommand({ InstanceId: selfId, Attribute: "sourceDestCheck" }));
  return out.SourceDestCheck?.Value !== false;
}

async function runCase(c: Case): Promise<string> {
  const base = baseConfig(c.id);
  const file = writeConfig(c.id, c.config ? c.config(base) : base);
  const consulOf = (c.consulOf ?? (() => devWritable(consul)))();
  await consulOf.reset();
  await admin.send(new ModifyInstanceAttributeCommand({ InstanceId: selfId, SourceDestCheck: { Value: true } }));
  const before = await consulOf.writable();
  const startedAt = Date.now();
  if (c.deny) proxy.failWith(c.deny.action, 1000, c.deny.error ?? UNAUTHORIZED);
  let result;
  try {
    result = await runCli(c.args ? c.args(file) : ["run", "--config", file], { name: `routeleader ${c.id}`, timeoutMs: c.timeoutMs ?? 60_000, ...(c.env ? { env: c.env } : {}) });
  } finally {
    proxy.clearFaults();
  }
  const context = `case ${c.id}; output:\n${result.output.slice(-3000)}`;
  expect(result.code, context).toBe(c.code);
  expect(result.output, context).toMatch(c.message);
  const forwardedWrites = proxy.calls({ caller: c.id, mutating: true }).filter((call) => !call.injected);
  expect(forwardedWrites.map((w) => w.action), context).toEqual([]);
  expect(await consulOf.writable(), `${context}\n(Consul was written)`).toEqual(before);
  // Not even a write that was undone later (a registration, then a deregistration on failure).
  const consulWrites = consulRelay.requests(startedAt).filter((r) => r.method !== "GET");
  expect(consulWrites.map((r) => `${r.method} ${r.path}`), `${context}\n(Consul was sent writes)`).toEqual([]);
  expect(await sourceDestCheckOn(), `${context}\n(the instance's source/dest check was modified)`).toBe(true);
  return result.output;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rl-bad-input-"));
  moto = await startMoto();
  proxy = await startFaultProxy({ upstream: moto.endpoint });
  admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  const { vpcId } = await createVpc(admin, "10.0.0.0/16");
  const subnet = await createSubnet(admin, vpcId, "10.0.1.0/24");
  unassociatedSubnet = await createSubnet(admin, vpcId, "10.0.2.0/24");
  ownTable = await createTable(admin, vpcId, { tags: { Name: "private-a" }, subnets: [subnet] });
  const other = await createVpc(admin, "10.9.0.0/16");
  otherVpcTable = await createTable(admin, other.vpcId, { tags: { Name: "private-other" } });
  const instance = await runInstance(admin, subnet);
  selfId = instance.InstanceId!;
  const identity = identityOf(instance);
  [consul, aclConsul, aemm, aemmV1, closedPort] = await Promise.all([
    startConsulDev("bad-input"),
    startSecureConsul({ managementToken: MANAGEMENT_TOKEN }),
    startAemm(identity, { imdsv2Only: true }),
    // IMDSv1 allowed here: only a relay refusing tokens stands in front of it.
    startAemm(identity, { imdsv2Only: false }),
    freePort(),
  ]);
  consulRelay = await startHttpRelay({ upstream: consul.httpAddr });
  relays.push(consulRelay);
  expect(await sourceDestCheckOn()).toBe(true);
}, 180_000);

afterAll(async () => {
  for (const r of relays) await r.stop();
  await aemm?.stop();
  await aemmV1?.stop();
  await aclConsul?.stop();
  await consul?.stop();
  admin?.destroy();
  await proxy?.stop();
  await moto?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe("configuration errors: exit 3, nothing written", () => {
  const cases: Case[] = [
    { id: "cfg-missing-file", args: () => ["run", "--config", "/nonexistent/routeleader.yaml"], code: EXIT.config, message: /routeleader\.yaml.*\(file\): cannot read config file \(ENOENT\)/ },
    { id: "cfg-directory", args: () => ["run", "--config", dir], code: EXIT.config, message: /\(file\): cannot read config file \(EISDIR\)/ },
    { id: "cfg-empty", config: () => "", code: EXIT.config, message: /cluster: required field is missing[\s\S]*routes: required field is missing/ },
    { id: "cfg-not-a-mapping", config: () => "- cluster: a\n", code: EXIT.config, message: /\(top level\): expected a mapping, got a list of 1/ },
    { id: "cfg-malformed-yaml", config: () => "cluster: bad\nroutes: [\n  - name: x\n", code: EXIT.config, message: /:\d+: \(yaml\): malformed YAML/ },
    { id: "cfg-duplicate-key", config: () => "cluster: bad\ncluster: again\nroutes: []\n", code: EXIT.config, message: /:2: \(yaml\): malformed YAML: Map keys must be unique/ },
    { id: "cfg-unknown-key", config: (b) => ({ ...b, colour: "red" }), code: EXIT.config, message: /\(top level\): unknown key "colour"/ },
    { id: "cfg-unknown-nested-key", config: (b) => ({ ...b, consul: { ...(b.consul as object), adress: "x" } }), code: EXIT.config, message: /consul: unknown key "adress"/ },
    { id: "cfg-no-routes", config: (b) => ({ ...b, routes: [] }), code: EXIT.config, message: /routes: at least one route is required/ },
    { id: "cfg-bad-cidr", config: (b) => ({ ...b, routes: [{ name: "a", table: { main: true }, destination: "10.0.0.1/33" }] }), code: EXIT.config, message: /routes\[0\]\.destination: invalid CIDR: "10\.0\.0\.1\/33"/ },
    { id: "cfg-bad-duration", config: (b) => ({ ...b, reconcileInterval: "30 parsecs" }), code: EXIT.config, message: /reconcileInterval: .*"30 parsecs"/ },
    { id: "cfg-duration-out-of-range", config: (b) => ({ ...b, reconcileInterval: "10ms" }), code: EXIT.config, message: /reconcileInterval: "10ms" is out of range/ },
    { id: "cfg-wrong-type", config: (b) => ({ ...b, aws: { writeAttempts: "two" } }), code: EXIT.config, message: /aws\.writeAttempts: .*number/ },
    { id: "cfg-bad-enum", config: (b) => ({ ...b, sourceDestCheck: "maybe" }), code: EXIT.config, message: /sourceDestCheck: .*"fix".*"verify".*"ignore"/ },
    { id: "cfg-bad-selector", config: (b) => ({ ...b, routes: [{ name: "a", table: { id: "table-1" }, destination: "0.0.0.0/0" }] }), code: EXIT.config, message: /routes\[0\]\.table\.id: a route table id looks like rtb-0123abcd/ },
    { id: "cfg-lockdelay-rule", config: (b) => ({ ...b, election: { lockDelay: "1s" } }), code: EXIT.config, message: /election\.lockDelay: lockDelay \(1s\) must be ≥ aws\.writeTimeout \(700ms\) \+ election\.fenceMargin \(500ms\)/ },
    { id: "cfg-liveness-rule", config: (b) => ({ ...b, election: { livenessTtl: "20s", sessionTtl: "10s" } }), code: EXIT.config, message: /livenessTtl \(20s\) must be shorter than sessionTtl \(10s\)/ },
    {
      id: "cfg-unknown-check",
      config: (b) => ({ ...b, routes: [{ name: "a", table: { main: true }, destination: "0.0.0.0/0", checks: ["egress"] }] }),
      code: EXIT.config,
      message: /routes\[0\]\.checks\[0\]: unknown check "egress" \(defined: none\)/,
    },
    {
      id: "cfg-duplicate-route-name",
      config: (b) => ({ ...b, routes: [{ name: "a", table: { main: true }, destination: "0.0.0.0/0" }, { name: "a", table: { main: true }, destination: "::/0" }] }),
      code: EXIT.config,
      message: /routes\[1\]\.name: duplicate route name "a" \(also routes\[0\]\)/,
    },
    {
      id: "cfg-same-table-and-destination",
      config: (b) => ({ ...b, routes: [{ name: "a", table: { main: true }, destination: "0.0.0.0/0" }, { name: "b", table: { main: true }, destination: "0.0.0.0/0" }] }),
      code: EXIT.config,
      message: /routes\[1\]: same table and destination 0\.0\.0\.0\/0 as routes\[0\] \("a"\)/,
    },
    { id: "cfg-cluster-with-slash", config: (b) => ({ ...b, cluster: "prod/nat" }), code: EXIT.config, message: /cluster: cluster must be 1-63 characters of a-z, 0-9 and '-'/ },
  ];
  for (const c of cases) it(c.id, () => runCase(c).then(() => undefined));
});

describe("route names a Consul key cannot hold: exit 3, nothing written", () => {
  const names = ["nat/a", "../../acl", "Default-V4", "nat a", "nat?a", "-nat", "x".repeat(64), "nat%2Fa", ""];
  for (const [i, routeName] of names.entries()) {
    it(`route name ${JSON.stringify(routeName)}`, () =>
      runCase({
        id: `name-${i}`,
        config: (b) => ({ ...b, routes: [{ name: routeName, table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0" }] }),
        code: EXIT.config,
        message: /routes\[0\]\.name: route name must be 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit/,
      }).then(() => undefined));
  }
});

describe("command-line misuse: exit 2, nothing written", () => {
  const cases: Case[] = [
    { id: "cli-no-verb", args: () => [], code: EXIT.usage, message: /Usage: routeleader/ },
    { id: "cli-unknown-verb", args: () => ["runn"], code: EXIT.usage, message: /unknown command 'runn'/ },
    { id: "cli-missing-config", args: () => ["run"], code: EXIT.usage, message: /required option '-c, --config <file>' not specified/ },
    { id: "cli-unknown-flag", args: (f) => ["run", "--config", f, "--bogus"], code: EXIT.usage, message: /unknown option '--bogus'/ },
    { id: "cli-bad-log-level", args: (f) => ["run", "--config", f, "--log-level", "loud"], code: EXIT.usage, message: /argument 'loud' is invalid/ },
    { id: "cli-extra-argument", args: (f) => ["run", "--config", f, "extra"], code: EXIT.usage, message: /too many arguments for 'run'/ },
  ];
  for (const c of cases) it(c.id, () => runCase(c).then(() => undefined));
});

describe("instance metadata: exit 4, nothing written", () => {
  it("IMDS unreachable (not on EC2)", async () => {
    await runCase({
      id: "imds-unreachable",
      config: (b) => ({ ...b, imds: { endpoint: `http://127.0.0.1:${closedPort}`, timeout: "500ms" } }),
      code: EXIT.identity,
      message: new RegExp(`routeleader: instance metadata http://127\\.0\\.0\\.1:${closedPort}/latest/meta-data/[a-z/-]+: unreachable \\(.*ECONNREFUSED.*\\): not on EC2, or instance metadata is disabled`),
    });
  });

  for (const status of [403, 404]) {
    it(`IMDS refusing tokens (PUT /latest/api/token → ${status}): no IMDSv1 fallback`, async () => {
      const relay = await startHttpRelay({ upstream: aemmV1.endpoint, refuse: (r) => (r.method === "PUT" && r.path.startsWith("/latest/api/token") ? { status } : undefined) });
      relays.push(relay);
      await runCase({ id: `imds-token-${status}`, config: (b) => ({ ...b, imds: { endpoint: relay.endpoint, timeout: "500ms" } }), code: EXIT.identity, message: /routeleader: instance metadata .*: no IMDSv2 token \(PUT \/latest\/api\/token refused or unanswered\) and IMDSv1 is never used/ });
      const requests = relay.requests();
      expect(requests.some((r) => r.method === "PUT")).toBe(true);
      // Without a token nothing may be read: the mock behind the relay would have answered IMDSv1 GETs.
      expect(requests.filter((r) => r.method === "GET" && r.path.includes("/meta-data/"))).toEqual([]);
    });
  }
});

describe("truth: start-up reads before it writes — AWS refusing a call at start: exit 6, no Consul request that writes, no EC2 write", () => {
  const cases: Case[] = [
    { id: "aws-describe-route-tables", deny: { action: "DescribeRouteTables" }, code: EXIT.aws, message: /missing IAM permission ec2:DescribeRouteTables .*UnauthorizedOperation/ },
    { id: "aws-describe-route-tables-access-denied", deny: { action: "DescribeRouteTables", error: ACCESS_DENIED }, code: EXIT.aws, message: /missing IAM permission ec2:DescribeRouteTables .*AccessDenied/ },
    { id: "aws-describe-instance-attribute", deny: { action: "DescribeInstanceAttribute" }, code: EXIT.aws, message: /missing IAM permission ec2:DescribeInstanceAttribute/ },
    { id: "aws-modify-instance-attribute", deny: { action: "ModifyInstanceAttribute" }, code: EXIT.aws, message: /missing IAM permission ec2:ModifyInstanceAttribute \(sourceDestCheck of i-/ },
    {
      id: "aws-describe-subnets",
      config: (b) => ({ ...b, routes: [{ name: "default-v4", table: { subnet: unassociatedSubnet }, destination: "0.0.0.0/0" }] }),
      deny: { action: "DescribeSubnets" },
      code: EXIT.aws,
      message: /missing IAM permission ec2:DescribeSubnets \(subnet subnet-/,
    },
    {
      id: "aws-describe-subnets-preferred-az",
      // preferredAz: auto (the default) reads the AZ of the tables' subnets at start.
      deny: { action: "DescribeSubnets" },
      timeoutMs: 30_000,
      code: EXIT.aws,
      message: /missing IAM permission ec2:DescribeSubnets/,
    },
    {
      id: "aws-describe-instances",
      // Peer discovery reads this instance's tags with DescribeInstances at start.
      config: (b) => ({ ...b, discovery: { enabled: true } }),
      deny: { action: "DescribeInstances" },
      timeoutMs: 30_000,
      code: EXIT.aws,
      message: /missing IAM permission ec2:DescribeInstances/,
    },
    { id: "aws-table-in-other-vpc", config: (b) => ({ ...b, routes: [{ name: "default-v4", table: { id: otherVpcTable }, destination: "0.0.0.0/0" }] }), code: EXIT.aws, message: /route "default-v4": route table rtb-[0-9a-f]+ is in vpc-[0-9a-f]+, not in this instance's VPC vpc-[0-9a-f]+: refusing to manage another VPC's table/ },
    { id: "aws-unknown-table", config: (b) => ({ ...b, routes: [{ name: "default-v4", table: { id: "rtb-0123456789abcdef0" }, destination: "0.0.0.0/0" }] }), code: EXIT.aws, message: /unknown route table id rtb-0123456789abcdef0/ },
    { id: "aws-selector-matches-nothing", config: (b) => ({ ...b, routes: [{ name: "default-v4", table: { tags: { Name: "no-such-table" } }, destination: "0.0.0.0/0" }] }), code: EXIT.aws, message: /route "default-v4": table selector .* matches no route table in vpc-/ },
  ];
  for (const c of cases) it(c.id, () => runCase(c).then(() => undefined));
});

describe("duplicate routes after table resolution: exit 3, nothing written", () => {
  it("two selectors naming the same table with the same destination", async () => {
    await runCase({
      id: "dup-after-resolution",
      config: (b) => ({
        ...b,
        routes: [
          { name: "by-tag", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0" },
          { name: "by-id", table: { id: ownTable }, destination: "0.0.0.0/0" },
        ],
      }),
      code: EXIT.config,
      message: /routes "by-tag" and "by-id" both manage 0\.0\.0\.0\/0 in rtb-[0-9a-f]+/,
    });
  });

  it("the same destination written differently (normalised CIDRs) through different selectors", async () => {
    await runCase({
      id: "dup-normalised",
      config: (b) => ({
        ...b,
        routes: [
          { name: "v6-by-tag", table: { tags: { Name: "private-a" } }, destination: "2001:db8::/32" },
          { name: "v6-by-or", table: { or: [{ id: ownTable }, { id: ownTable }] }, destination: "2001:0db8:0000::/32" },
        ],
      }),
      code: EXIT.config,
      message: /routes "v6-by-tag" and "v6-by-or" both manage 2001:db8::\/32 in rtb-/,
    });
  });
});

describe("truth: start-up reads before it writes — Consul refusing at start: exit 5, nothing left in Consul, no EC2 write", () => {
  it("unreachable", async () => {
    await runCase({
      id: "consul-unreachable",
      config: (b) => ({ ...b, consul: { address: `http://127.0.0.1:${closedPort}` } }),
      code: EXIT.consul,
      message: new RegExp(`Consul agent unreachable at http://127\\.0\\.0\\.1:${closedPort}: .*ECONNREFUSED`),
    });
  });

  it("not a URL", async () => {
    await runCase({ id: "consul-not-a-url", config: (b) => ({ ...b, consul: { address: "http://[::1" } }), code: EXIT.config, message: /consul\.address: "http:\/\/\[::1" is not a URL or host:port/ });
  });

  it("token file unreadable", async () => {
    await runCase({ id: "consul-token-file-missing", config: (b) => ({ ...b, consul: { address: consul.httpAddr, tokenFile: join(dir, "no-token") } }), code: EXIT.config, message: /cannot read Consul token file .*no-token \(ENOENT\)/ });
  });

  const aclCase = (id: string, token: string | undefined, message: RegExp): Case => ({
    id,
    config: (b) => {
      if (token) writeFileSync(join(dir, `${id}.token`), `${token}\n`, { mode: 0o600 });
      return { ...b, consul: { address: aclConsul.address, ...(token ? { tokenFile: join(dir, `${id}.token`) } : {}) } };
    },
    consulOf: () => aclConsul,
    code: EXIT.consul,
    message,
  });

  it("ACL denied: no token", async () => {
    await runCase(aclCase("acl-no-token", undefined, /Consul at http:\/\/127\.0\.0\.1:\d+ refused the ACL token: .*HTTP 403/));
  });

  it("ACL denied: wrong token (from consul.tokenFile)", async () => {
    await runCase(aclCase("acl-wrong-token", "7b1f7a44-0000-4000-8000-000000000000", /Consul at http:\/\/127\.0\.0\.1:\d+ refused the ACL token: .*HTTP 403.*ACL not found/));
  });

  it("ACL denied: wrong token (from CONSUL_HTTP_TOKEN)", async () => {
    await runCase({ ...aclCase("acl-wrong-env-token", undefined, /refused the ACL token: .*ACL not found/), env: { CONSUL_HTTP_TOKEN: "7b1f7a44-0000-4000-8000-000000000001" } });
  });

  it("ACL: a token that may read the agent but not register a service", async () => {
    const policy = await aclConsul.call("PUT", "/v1/acl/policy", JSON.stringify({ Name: "read-only", Rules: 'agent_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }' }));
    expect(policy.status).toBe(200);
    const token = await aclConsul.call("PUT", "/v1/acl/token", JSON.stringify({ Policies: [{ Name: "read-only" }] }));
    const secret = (token.json as { SecretID: string }).SecretID;
    await runCase(aclCase("acl-read-only-token", secret, /refused the ACL token|lacks a permission/));
  });
});

describe("control: a valid start does write (so the assertions above can fail)", () => {
  it("registers, creates a session, and disables the source/dest check", async () => {
    await devWritable(consul).reset();
    await admin.send(new ModifyInstanceAttributeCommand({ InstanceId: selfId, SourceDestCheck: { Value: true } }));
    const file = writeConfig("control", baseConfig("control"));
    const agent = spawnCli(["run", "--config", file], { name: "routeleader control" });
    try {
      await agent.waitForLine(/"step":"ready"/, 60_000);
      const left = await devWritable(consul).writable();
      expect(left.services).toContain(`routeleader-${selfId}`);
      expect(consulRelay.requests().some((r) => r.method === "PUT" && r.path.startsWith("/v1/agent/service/register")), "the relay sees the registration").toBe(true);
      expect(proxy.calls({ caller: "control", mutating: true }).filter((c) => !c.injected).map((c) => c.action)).toContain("ModifyInstanceAttribute");
    } finally {
      await agent.stop(15_000);
    }
    expect(agent.exit?.code).toBe(EXIT.ok);
    await admin.send(new ModifyInstanceAttributeCommand({ InstanceId: selfId, SourceDestCheck: { Value: true } }));
  });
});

