import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { DeleteTagsCommand, EC2Client, StopInstancesCommand, TerminateInstancesCommand, type Instance } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AwsCli } from "../support/aws-cli.js";
import { binaryPath } from "../support/binaries.js";
import { BootstrapSandbox, type RunResult } from "../support/bootstrap-sandbox.js";
import { REPO } from "../support/cfn.js";
import { makeTlsMaterial, startSecureConsul, type StartedSecureConsul, type TlsMaterial } from "../support/consul-secure.js";
import { startConsul } from "../support/consul.js";
import { createSubnet, createVpc, runInstance } from "../support/ec2-world.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { waitUntil } from "../support/process.js";

/**
 * scripts/node-credentials.sh, the servers' leader step that mints each NAT node's Consul token and
 * client certificate (README "Deploy", docs/deploy.md), against a real Consul server (ACLs deny by
 * default, HTTPS as on the stack's servers) and moto (EC2 instances of the cluster, SSM). The
 * script runs in a bootstrap sandbox as routeleader-credentials.service would run it on the
 * leader: its ROOT holds what bootstrap.sh wrote there (credentials.env, management token, CA).
 */

const CLUSTER = "creds";
const MANAGEMENT = "2b7c4f1e-9a3d-4e5f-8c6b-1d2e3f4a5b6c";
const PREFIX = `/routeleader/${CLUSTER}/nodes`;

let moto: StartedMoto;
let aws: AwsCli;
let ec2: EC2Client;
let tls: TlsMaterial;
let consul: StartedSecureConsul;
let sb: BootstrapSandbox;
const SCRIPT = join(REPO, "scripts", "node-credentials.sh");
/** a: to be terminated, b: to be stopped, c: keeps running, d: loses its cluster tag; other: another cluster's. */
const nodes = {} as Record<"a" | "b" | "c" | "d" | "other", Instance>;

const step = (): Promise<RunResult> => sb.run(SCRIPT, { CONSUL_HTTPS: consul.address });

async function ssmNames(): Promise<string[]> {
  const out = await aws.ok("ssm", "get-parameters-by-path", "--path", PREFIX, "--recursive", "--query", "Parameters[].Name", "--output", "text");
  return out.split(/\s+/).filter(Boolean).sort();
}

const namesOf = (...ids: Instance[]) => ids.flatMap((i) => ["cert", "key", "token"].map((p) => `${PREFIX}/${i.InstanceId}/${p}`)).sort();

async function tokenOf(i: Instance): Promise<string> {
  return (await aws.ok("ssm", "get-parameter", "--name", `${PREFIX}/${i.InstanceId}/token`, "--with-decryption", "--query", "Parameter.Value", "--output", "text")).trim();
}

/** What a NAT node's Consul agent and routeleader do with its token: register its node, create a session on it. */
async function useToken(i: Instance, token: string): Promise<{ register: number; session: number }> {
  const register = await consul.call("PUT", "/v1/catalog/register", JSON.stringify({ Node: i.InstanceId, Address: "127.0.0.1" }), token);
  const session = await consul.call("PUT", "/v1/session/create", JSON.stringify({ Node: i.InstanceId, Name: "probe", NodeChecks: [], TTL: "30s" }), token);
  if (session.status === 200) await consul.call("PUT", `/v1/session/destroy/${(session.json as { ID: string }).ID}`);
  return { register: register.status, session: session.status };
}

async function tokensOfCluster(): Promise<string[]> {
  const all = (await consul.call("GET", "/v1/acl/tokens")).json as { Description: string; NodeIdentities?: { NodeName: string }[] }[];
  return all.filter((t) => t.Description.startsWith("routeleader NAT node ")).map((t) => t.NodeIdentities![0]!.NodeName).sort();
}

beforeAll(async () => {
  tls = makeTlsMaterial();
  moto = await startMoto();
  aws = await AwsCli.start(moto.endpoint);
  ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  consul = await startSecureConsul({ managementToken: MANAGEMENT, tls, httpsWithoutClientCert: true });
  const { vpcId } = await createVpc(ec2, "10.9.0.0/16");
  const subnet = await createSubnet(ec2, vpcId, "10.9.1.0/24");
  for (const k of ["a", "b", "c", "d"] as const) nodes[k] = await runInstance(ec2, subnet, { "routeleader:cluster": CLUSTER });
  nodes.other = await runInstance(ec2, subnet, { "routeleader:cluster": "someone-else" });

  // What bootstrap.sh leaves on a server for this step (RL_RELEASE_DIR=/opt/release here).
  sb = new BootstrapSandbox({ aws, sharedSsm: true });
  const put = (path: string, content: string, mode = 0o600) => {
    mkdirSync(join(sb.root, path, ".."), { recursive: true });
    writeFileSync(join(sb.root, path), content, { mode });
  };
  put("/etc/routeleader/credentials.env", `RL_CLUSTER=${CLUSTER}\nREGION=${EMULATOR_AWS.region}\nRL_CONSUL_DATACENTER=dc1\nPRIVATE_IP=127.0.0.1\nRL_POLICY_FILE=/opt/release/consul-acl-policy.hcl\n`);
  put("/etc/consul.d/management-token", `${MANAGEMENT}\n`);
  put("/etc/consul.d/tls/ca.pem", readFileSync(tls.caFile, "utf8"), 0o644);
  put("/etc/consul.d/tls/ca-key.pem", readFileSync(join(tls.dir, "consul-agent-ca-key.pem"), "utf8"));
  mkdirSync(join(sb.root, "opt/release"), { recursive: true });
  copyFileSync(join(REPO, "docs", "consul-acl-policy.hcl"), join(sb.root, "opt/release/consul-acl-policy.hcl"));
  mkdirSync(join(sb.root, "usr/local/bin"), { recursive: true });
  symlinkSync(binaryPath("consul"), join(sb.root, "usr/local/bin/consul"));
}, 180_000);

afterAll(async () => {
  await consul?.stop();
  ec2?.destroy();
  await aws?.stop();
  await moto?.stop();
  sb?.dispose();
  if (tls) await rm(tls.dir, { recursive: true, force: true });
}, 60_000);

describe("ship: node credentials, minted and revoked by the Consul servers' leader (scripts/node-credentials.sh)", () => {
  it("ship: the leader mints a token and a client certificate per NAT instance of its cluster; each token writes its own node", async () => {
    const res = await step();
    expect(res.code, res.output).toBe(0);
    expect(await ssmNames()).toEqual(namesOf(nodes.a, nodes.b, nodes.c, nodes.d));
    expect(await tokensOfCluster()).toEqual([nodes.a, nodes.b, nodes.c, nodes.d].map((i) => i.InstanceId).sort());
    for (const k of ["a", "b", "c", "d"] as const) expect(await useToken(nodes[k], await tokenOf(nodes[k]))).toEqual({ register: 200, session: 200 });
    // The client certificate: signed by the cluster's CA, valid as long as a CA of `consul tls ca create` (5 years), not 1.
    const cert = join(sb.dir, "client.pem");
    writeFileSync(cert, await aws.ok("ssm", "get-parameter", "--name", `${PREFIX}/${nodes.a.InstanceId}/cert`, "--with-decryption", "--query", "Parameter.Value", "--output", "text"));
    execFileSync("openssl", ["verify", "-CAfile", tls.caFile, cert], { stdio: "pipe" });
    expect(() => execFileSync("openssl", ["x509", "-noout", "-checkend", String(4 * 365 * 86400), "-in", cert], { stdio: "pipe" }), "valid for more than 4 years").not.toThrow();
    // A second run finds nothing to do.
    const again = await step();
    expect(again.code, again.output).toBe(0);
    expect(again.output).not.toMatch(/credentials for|revoked/);
    expect(await tokensOfCluster()).toHaveLength(4);
  });

  it("ship: a terminated instance, or one no longer tagged for the cluster, loses its token (403 on node write and session create) and its SSM parameters; a stopped and a running one keep theirs", async () => {
    const tokens = Object.fromEntries(await Promise.all((["a", "b", "c", "d"] as const).map(async (k) => [k, await tokenOf(nodes[k])] as const))) as Record<"a" | "b" | "c" | "d", string>;
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [nodes.a.InstanceId!] }));
    await ec2.send(new StopInstancesCommand({ InstanceIds: [nodes.b.InstanceId!] }));
    await ec2.send(new DeleteTagsCommand({ Resources: [nodes.d.InstanceId!], Tags: [{ Key: "routeleader:cluster" }] }));
    const res = await step();
    expect(res.code, res.output).toBe(0);
    expect(await useToken(nodes.a, tokens.a)).toEqual({ register: 403, session: 403 });
    expect(await useToken(nodes.d, tokens.d)).toEqual({ register: 403, session: 403 });
    expect(await ssmNames()).toEqual(namesOf(nodes.b, nodes.c));
    expect(await tokensOfCluster()).toEqual([nodes.b, nodes.c].map((i) => i.InstanceId).sort());
    expect(await useToken(nodes.b, tokens.b)).toEqual({ register: 200, session: 200 });
    expect(await useToken(nodes.c, tokens.c)).toEqual({ register: 200, session: 200 });
    expect(res.output).toContain(`revoked the credentials of ${nodes.a.InstanceId} (terminated or no longer in cluster ${CLUSTER})`);
    expect(res.output).toContain(`revoked the credentials of ${nodes.d.InstanceId}`);
    // Nothing left to revoke, nothing minted again.
    const again = await step();
    expect(again.code, again.output).toBe(0);
    expect(again.output).not.toMatch(/credentials for|revoked/);
    expect(await ssmNames()).toEqual(namesOf(nodes.b, nodes.c));
  });

  it("ship: the Consul client of a terminated NAT instance, once failed, is force-left by the leader; a failed client of a stopped instance is not", async () => {
    const subnet = nodes.c.SubnetId!;
    const [gone, paused] = [await runInstance(ec2, subnet, { "routeleader:cluster": CLUSTER }), await runInstance(ec2, subnet, { "routeleader:cluster": CLUSTER })];
    const member = (name: string) => async () => ((await consul.call("GET", "/v1/agent/members")).json as { Name: string; Status: number }[]).find((m) => m.Name === name);
    // Each instance's Consul client (plain gossip member; the server joins it), then killed as the instance goes.
    for (const i of [gone, paused]) {
      const client = await startConsul({ mode: "client", node: i.InstanceId! });
      try {
        expect((await consul.call("PUT", `/v1/agent/join/${client.serfLanAddr}`)).status).toBe(200);
        await waitUntil(`${i.InstanceId} alive`, async () => ((await member(i.InstanceId!)())?.Status === 1 ? true : undefined), { timeoutMs: 20_000, intervalMs: 250 });
      } finally {
        await client.kill();
      }
    }
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [gone.InstanceId!] }));
    await ec2.send(new StopInstancesCommand({ InstanceIds: [paused.InstanceId!] }));
    for (const i of [gone, paused]) await waitUntil(`${i.InstanceId} failed`, async () => ((await member(i.InstanceId!)())?.Status === 4 ? true : undefined), { timeoutMs: 60_000, intervalMs: 500 });
    const res = await step();
    expect(res.code, res.output).toBe(0);
    expect(res.output).toContain(`force-left the Consul client ${gone.InstanceId} (failed; instance terminated or no longer in cluster ${CLUSTER})`);
    // Pruned: gone from the member list (or at least left), while the stopped one stays failed.
    expect((await member(gone.InstanceId!)())?.Status ?? 3).toBe(3);
    expect((await member(paused.InstanceId!)())?.Status).toBe(4);
    // Servers are never force-left by this step, nor alive members.
    expect((await member("secure")())?.Status).toBe(1);
  }, 120_000);

  it("ship: a run that stopped half-way (a certificate parameter and a token, no token parameter) is started afresh: one complete set, the stray token deleted", async () => {
    const subnet = nodes.c.SubnetId!;
    const e = await runInstance(ec2, subnet, { "routeleader:cluster": CLUSTER });
    await aws.ok("ssm", "put-parameter", "--type", "SecureString", "--name", `${PREFIX}/${e.InstanceId}/cert`, "--value", "half-written", "--tags", `Key=routeleader:instance,Value=${e.InstanceId}`);
    const stray = await consul.call("PUT", "/v1/acl/token", JSON.stringify({ Description: `routeleader NAT node ${e.InstanceId}`, Policies: [{ Name: `routeleader-${CLUSTER}` }], NodeIdentities: [{ NodeName: e.InstanceId, Datacenter: "dc1" }] }));
    const strayToken = (stray.json as { SecretID: string }).SecretID;
    const res = await step();
    expect(res.code, res.output).toBe(0);
    expect(await ssmNames()).toEqual(namesOf(nodes.b, nodes.c, e));
    expect(await tokensOfCluster()).toEqual([nodes.b, nodes.c, e].map((i) => i.InstanceId).sort());
    expect(await useToken(e, strayToken)).toEqual({ register: 403, session: 403 });
    expect(await useToken(e, await tokenOf(e))).toEqual({ register: 200, session: 200 });
    expect(res.output).toContain(`revoked the credentials of ${e.InstanceId} (unfinished by an earlier run)`);
  });
});
