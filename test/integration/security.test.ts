import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { EC2Client, TerminateInstancesCommand, type Instance } from "@aws-sdk/client-ec2";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { EXIT } from "../../agent/exit-codes.js";
import { startAemm, type StartedAemm } from "../support/aemm.js";
import { runCli, spawnCli, type CliOptions } from "../support/agent-cli.js";
import { ConsulAclError, ConsulApi, ConsulConnection } from "../../agent/consul/index.js";
import { createEc2Client } from "../../agent/aws/index.js";
import { PeerDiscovery } from "../../agent/discovery/index.js";
import { startConsul } from "../support/consul.js";
import { makeTlsMaterial, startSecureConsul, type StartedSecureConsul, type TlsMaterial } from "../support/consul-secure.js";
import { createSubnet, createTable, createVpc, identityOf, memoryLogger, runInstance } from "../support/ec2-world.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { freePort } from "../support/ports.js";
import { waitUntil, type ManagedProcess } from "../support/process.js";

/**
 * Secrets and transport, on real components: a Consul dev agent serving HTTPS only (client
 * certificates required, made with `consul tls`) with ACLs denying by default; the agent
 * runs the real CLI at debug level. The ACL token must reach Consul (the agent gets to
 * "ready") and must appear nowhere: not in any log line, not in /proc/<pid>/cmdline.
 */

const MANAGEMENT = "5f0e3a55-8d4c-4c39-9f0e-2b8f4a1c9e01";
const REPO = join(import.meta.dirname, "..", "..");
const CLUSTER = "sec";
/** The secure Consul's node name: the agent's own node. */
const NODE = "secure";
/** The one copy of the agent's ACL policy (README and docs/deploy.md point to it); its token is the agents' here. */
const POLICY_FILE = join(REPO, "docs", "consul-acl-policy.hcl");
const AGENT_RULES = readFileSync(POLICY_FILE, "utf8").replaceAll("<cluster>", CLUSTER);

let moto: StartedMoto;
let admin: EC2Client;
let aemm: StartedAemm;
let tls: TlsMaterial;
let otherCa: TlsMaterial;
let consul: StartedSecureConsul;
let agentToken: string;
let dir: string;
let subnet: string;
let selfInstance: Instance;

/**
 * Writes an agent config. Its HTTP endpoint listens on a free loopback port (never the default
 * 9731, which another agent on this machine may hold); `extra` may override it.
 */
async function config(id: string, consulSection: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(dir, `${id}.yaml`);
  const port = await freePort();
  writeFileSync(
    file,
    stringify({
      cluster: CLUSTER,
      region: EMULATOR_AWS.region,
      consul: consulSection,
      imds: { endpoint: aemm.endpoint },
      aws: { endpoint: moto.endpoint },
      sourceDestCheck: "ignore",
      discovery: { enabled: false },
      lifecycle: { watch: false },
      routes: [{ name: "default-v4", table: { tags: { Name: "private-sec" } }, destination: "0.0.0.0/0" }],
      http: { listen: `127.0.0.1:${port}` },
      ...extra,
    }),
  );
  chmodSync(file, 0o644);
  return file;
}

const tlsFiles = () => ({ caFile: tls.caFile, certFile: tls.clientCert, keyFile: tls.clientKey });

/** Every agent a test started: afterEach stops those still running, whatever the test did. */
const agents: ManagedProcess[] = [];

afterEach(async () => {
  await Promise.all(agents.splice(0).map((p) => p.stop(15_000)));
});

/** Starts the agent, keeps every output line, waits for "ready". */
async function startAgent(file: string, options: CliOptions = {}): Promise<{ proc: ManagedProcess; lines: string[] }> {
  const proc = spawnCli(["run", "--config", file, "--log-level", "debug"], options);
  agents.push(proc);
  const lines: string[] = [];
  proc.onLine((l) => lines.push(l));
  await proc.waitForLine(/"step":"ready"/, 60_000);
  return { proc, lines };
}

async function stopAndCollect(agent: { proc: ManagedProcess; lines: string[] }): Promise<string> {
  await agent.proc.stop(15_000);
  expect(agent.proc.exit?.code).toBe(EXIT.ok);
  return agent.lines.join("\n");
}

function cmdline(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rl-security-"));
  chmodSync(dir, 0o755);
  tls = makeTlsMaterial();
  otherCa = makeTlsMaterial();
  for (const d of [tls.dir]) chmodSync(d, 0o755);
  for (const f of [tls.caFile, tls.clientCert, tls.clientKey]) chmodSync(f, 0o644);
  moto = await startMoto();
  admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  const { vpcId } = await createVpc(admin, "10.0.0.0/16");
  subnet = await createSubnet(admin, vpcId, "10.0.1.0/24");
  await createTable(admin, vpcId, { tags: { Name: "private-sec" }, subnets: [subnet] });
  const instance = await runInstance(admin, subnet, { "routeleader:cluster": CLUSTER });
  selfInstance = instance;
  const identity = identityOf(instance);
  [aemm, consul] = await Promise.all([startAemm(identity), startSecureConsul({ managementToken: MANAGEMENT, tls })]);
  const policy = await consul.call("PUT", "/v1/acl/policy", JSON.stringify({ Name: "routeleader", Rules: AGENT_RULES }));
  expect(policy.status).toBe(200);
  // As scripts/node-credentials.sh mints a NAT node's token: the policy plus a node identity for the node alone.
  const token = await consul.call("PUT", "/v1/acl/token", JSON.stringify({ Description: "routeleader agent", Policies: [{ Name: "routeleader" }], NodeIdentities: [{ NodeName: NODE, Datacenter: "dc1" }] }));
  agentToken = (token.json as { SecretID: string }).SecretID;
  expect(agentToken).toMatch(/^[0-9a-f-]{36}$/);
}, 180_000);

afterAll(async () => {
  await consul?.stop();
  await aemm?.stop();
  admin?.destroy();
  await moto?.stop();
  for (const d of [dir, tls?.dir, otherCa?.dir]) if (d) rmSync(d, { recursive: true, force: true });
}, 60_000);

describe("the Consul ACL token is used and never disclosed", () => {
  it("from consul.tokenFile, over HTTPS with a client certificate: ready, and the token is in no log line and not in the command line", async () => {
    const tokenFile = join(dir, "token-file");
    writeFileSync(tokenFile, `${agentToken}\n`, { mode: 0o600 });
    const agent = await startAgent(await config("token-file", { address: consul.address, tokenFile, ...tlsFiles() }));
    expect(cmdline(agent.proc.pid!)).not.toContain(agentToken);
    // The token reached Consul: the service is registered under the agent's policy.
    const services = await consul.call("GET", "/v1/agent/services");
    expect(Object.keys(services.json as object).some((id) => id.startsWith("routeleader-"))).toBe(true);
    const output = await stopAndCollect(agent);
    expect(output).toMatch(/"level":20/);
    expect(output).not.toContain(agentToken);
  });

  it("from CONSUL_HTTP_TOKEN, run as an unprivileged user (uid 65534): ready, token in no log line, not in the command line", async () => {
    const agent = await startAgent(await config("token-env", { address: consul.address, ...tlsFiles() }), { env: { CONSUL_HTTP_TOKEN: agentToken }, asUser: { uid: 65534, gid: 65534 } });
    const pid = agent.proc.pid!;
    // setpriv execs node in place, so the pid is the agent's own.
    expect(readFileSync(`/proc/${pid}/status`, "utf8")).toMatch(/^Uid:\s+65534\s/m);
    expect(cmdline(pid)).not.toContain(agentToken);
    const output = await stopAndCollect(agent);
    expect(output).not.toContain(agentToken);
  });

  it("from CONSUL_HTTP_TOKEN_FILE: ready, token in no log line", async () => {
    const tokenFile = join(dir, "token-env-file");
    writeFileSync(tokenFile, agentToken, { mode: 0o600 });
    const agent = await startAgent(await config("token-env-file", { address: consul.address, ...tlsFiles() }), { env: { CONSUL_HTTP_TOKEN_FILE: tokenFile } });
    expect(cmdline(agent.proc.pid!)).not.toContain(agentToken);
    expect(await stopAndCollect(agent)).not.toContain(agentToken);
  });

  it("a refused token is not echoed in the error either", async () => {
    const wrong = "9d1c7e2a-1111-4222-8333-444455556666";
    const result = await runCli(["run", "--config", await config("token-wrong", { address: consul.address, ...tlsFiles() }), "--log-level", "debug"], { env: { CONSUL_HTTP_TOKEN: wrong } });
    expect(result.code).toBe(EXIT.consul);
    expect(result.output).toMatch(/refused the ACL token: .*ACL not found/);
    expect(result.output).not.toContain(wrong);
  });
});

describe("truth: the token file and the documented ACL policy", () => {
  it("truth: the token file wins over CONSUL_HTTP_TOKEN (a wrong one here): ready and holding its route; the log names the source, never a token", async () => {
    const tokenFile = join(dir, "token-file-wins");
    writeFileSync(tokenFile, `${agentToken}\n`, { mode: 0o600 });
    const wrong = "9d1c7e2a-1111-4222-8333-444455556667";
    await consul.reset();
    const agent = await startAgent(await config("token-file-wins", { address: consul.address, tokenFile, ...tlsFiles() }), { env: { CONSUL_HTTP_TOKEN: wrong } });
    const source = agent.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.tokenSource);
    expect(source).toMatchObject({ tokenSource: "consul.tokenFile", tokenFile, ignored: ["CONSUL_HTTP_TOKEN"] });
    // With the documented policy the agent holds its route: a session and a KV write under its prefix.
    const held = await waitUntil(
      "the route key held by the agent's session",
      async () => {
        const kv = await consul.call("GET", `/v1/kv/routeleader/${CLUSTER}/routes/default-v4`);
        const entry = (kv.json as { Session?: string }[] | undefined)?.[0];
        return entry?.Session ? entry : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(held.Session).toMatch(/^[0-9a-f-]{36}$/);
    const output = await stopAndCollect(agent);
    expect(output).not.toContain(agentToken);
    expect(output).not.toContain(wrong);
  });

  it("truth: a token file readable by group or others (0644) is refused with exit 3 before anything is written to Consul", async () => {
    const tokenFile = join(dir, "token-0644");
    writeFileSync(tokenFile, `${agentToken}\n`);
    chmodSync(tokenFile, 0o644);
    await consul.reset();
    const before = await consul.writable();
    const result = await runCli(["run", "--config", await config("token-0644", { address: consul.address, tokenFile, ...tlsFiles() }), "--log-level", "debug"]);
    expect(result.code).toBe(EXIT.config);
    expect(result.output).toContain(`routeleader: Consul token file ${tokenFile} (consul.tokenFile) is mode 0644: group and others may access it; the token must be readable by the agent's user only (chmod 600 ${tokenFile})`);
    expect(result.output).not.toContain(agentToken);
    expect(await consul.writable()).toEqual(before);
  });

  it("truth: the documented policy suffices under default-deny: agent/self, join a peer, register, sessions, its KV prefix; nothing outside the prefix, no force-leave (discovery carries on)", async () => {
    const api = new ConsulApi(new ConsulConnection({ address: consul.address, token: agentToken, ...tlsFiles() }));
    const peer = await startConsul({ mode: "client", node: "peer-sec" });
    try {
      expect((await api.agentSelf()).nodeName).toBe("secure");
      await api.join(peer.serfLanAddr);
      await waitUntil("the peer alive in the member list", async () => ((await api.members()).find((m) => m.name === "peer-sec")?.status === 1 ? true : undefined), { timeoutMs: 20_000 });
      const serviceId = "routeleader-acl-probe";
      await api.registerService({ id: serviceId, name: "routeleader", tags: ["routeleader"], meta: {}, checks: [{ id: `${serviceId}:liveness`, name: "liveness", ttlMs: 30_000, status: "passing" }] });
      await api.updateTtlCheck(`${serviceId}:liveness`, "passing", "probe");
      expect((await api.healthService("routeleader")).map((i) => i.serviceId)).toContain(serviceId);
      const session = await api.createSession({ name: "acl probe", ttlMs: 10_000, lockDelayMs: 1000, behavior: "release", nodeChecks: ["serfHealth"], serviceChecks: [`${serviceId}:liveness`] });
      await api.renewSession(session);
      expect((await api.sessionInfo(session))?.id).toBe(session);
      expect(await api.acquire(`routeleader/${CLUSTER}/routes/acl-probe`, session, "{}")).toBe(true);
      expect(await api.release(`routeleader/${CLUSTER}/routes/acl-probe`, session, "{}")).toBe(true);
      expect(await api.kvPut(`routeleader/${CLUSTER}/failback/acl-probe`, "1")).toBe(true);
      await api.kvDelete(`routeleader/${CLUSTER}/failback/acl-probe`);
      await api.destroySession(session);
      await api.deregisterService(serviceId);
      // Narrow: another cluster's keys, and the whole prefix, are refused.
      await expect(api.kvPut("routeleader/other-cluster/routes/x", "1")).rejects.toBeInstanceOf(ConsulAclError);
      await expect(api.kvPut("elsewhere/x", "1")).rejects.toBeInstanceOf(ConsulAclError);
      // The peer dies (its instance terminated). The policy has no operator right: the agent may
      // not force-leave it (the stack's servers do, scripts/node-credentials.sh) ...
      await peer.kill();
      await waitUntil("the peer failed", async () => ((await api.members()).find((m) => m.name === "peer-sec")?.status === 4 ? true : undefined), { timeoutMs: 60_000, intervalMs: 500 });
      await expect(api.forceLeave("peer-sec")).rejects.toBeInstanceOf(ConsulAclError);
      // ... and its peer discovery carries on: the refusal is logged once, the round completes.
      const gone = await runInstance(admin, subnet, { "routeleader:cluster": CLUSTER });
      await admin.send(new TerminateInstancesCommand({ InstanceIds: [gone.InstanceId!] }));
      const ec2 = createEc2Client({ region: EMULATOR_AWS.region, endpoint: moto.endpoint, credentials: EMULATOR_AWS.credentials });
      try {
        const { log, lines } = memoryLogger();
        const discovery = new PeerDiscovery({
          ec2,
          consul: api,
          identity: identityOf(selfInstance),
          config: { discovery: { tags: { "routeleader:cluster": CLUSTER }, interval: 1000 } },
          log,
          joinAddress: () => undefined,
          memberInstanceId: (m) => (m.name === "peer-sec" ? gone.InstanceId : undefined),
        });
        for (let round = 0; round < 2; round++) expect((await discovery.runOnce()).forceLeft).toEqual([]);
        expect(lines.filter((l) => l.msg === "consul member not force-left").map((l) => l.node)).toEqual(["peer-sec"]);
        expect((await api.members()).find((m) => m.name === "peer-sec")?.status).toBe(4);
      } finally {
        ec2.destroy();
      }
    } finally {
      await peer.stop();
    }
  }, 120_000);

  it("ship: least privilege: the node's token may write its own node (and the agent with it registers, elects, writes) but no other node", async () => {
    await consul.reset();
    const tokenFile = join(dir, "token-node-identity");
    writeFileSync(tokenFile, `${agentToken}\n`, { mode: 0o600 });
    const agent = await startAgent(await config("node-identity", { address: consul.address, tokenFile, ...tlsFiles() }));
    await waitUntil("the route key held by the agent's session", async () => {
      const kv = await consul.call("GET", `/v1/kv/routeleader/${CLUSTER}/routes/default-v4`);
      return (kv.json as { Session?: string }[] | undefined)?.[0]?.Session ? true : undefined;
    }, { timeoutMs: 30_000 });
    await stopAndCollect(agent);
    // What the Consul client agent on a NAT node does with this token (its agent token): register its own node.
    const own = (await consul.call("GET", `/v1/catalog/node/${NODE}`)).json as { Node: { Address: string } };
    const register = (node: string) => consul.call("PUT", "/v1/catalog/register", JSON.stringify({ Node: node, Address: own.Node.Address }), agentToken);
    expect((await register(NODE)).status).toBe(200);
    // Another node (a peer NAT instance, a server): refused, so a stolen token cannot re-point or take over a peer's node.
    expect((await register("i-0peer0000000000001")).status).toBe(403);
    expect((await consul.call("PUT", "/v1/catalog/deregister", JSON.stringify({ Node: "i-0peer0000000000001" }), agentToken)).status).toBe(403);
    expect((await consul.call("GET", "/v1/catalog/node/i-0peer0000000000001")).status).toBe(200);
    expect((await consul.call("GET", "/v1/catalog/node/i-0peer0000000000001")).json).toBeNull();
  });

  it("truth: README quotes the policy file's rules exactly, and docs/deploy.md points to the file instead of listing rights of its own", () => {
    const rules = (text: string) =>
      text
        .split("\n")
        .map((l) => l.trimEnd())
        .filter((l) => l.trim() && !l.trim().startsWith("#"));
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const quoted = /```hcl\n# docs\/consul-acl-policy\.hcl[^\n]*\n([\s\S]*?)```/.exec(readme);
    expect(quoted, "README has the policy in an hcl block headed '# docs/consul-acl-policy.hcl'").not.toBeNull();
    expect(rules(quoted![1]!)).toEqual(rules(readFileSync(POLICY_FILE, "utf8")));
    const deploy = readFileSync(join(REPO, "docs", "deploy.md"), "utf8");
    expect(deploy).toContain("consul-acl-policy.hcl");
    expect(deploy).not.toMatch(/node:write|service:write|session:write|key:write/);
  });
});

describe("TLS to Consul", () => {
  it("a CA that did not sign Consul's certificate: exit 5 naming the CA setting", async () => {
    const result = await runCli(["run", "--config", await config("wrong-ca", { address: consul.address, caFile: otherCa.caFile, certFile: tls.clientCert, keyFile: tls.clientKey }), "--log-level", "debug"], { env: { CONSUL_HTTP_TOKEN: agentToken } });
    expect(result.code).toBe(EXIT.consul);
    expect(result.output).toMatch(/routeleader: Consul agent unreachable at https:\/\/127\.0\.0\.1:\d+: .*TLS: Consul's certificate is not signed by the configured CA \(consul\.caFile \/ CONSUL_CACERT\)/);
  });

  it("a server name the certificate does not hold: exit 5 naming the name setting", async () => {
    const result = await runCli(["run", "--config", await config("wrong-name", { address: consul.address, ...tlsFiles(), tlsServerName: "consul.example.org" })], { env: { CONSUL_HTTP_TOKEN: agentToken } });
    expect(result.code).toBe(EXIT.consul);
    expect(result.output).toMatch(/TLS: Consul's certificate does not match the server name \(set consul\.tlsServerName \/ CONSUL_TLS_SERVER_NAME .*consul\.example\.org/);
  });

  it("the right server name (server.dc1.consul) verifies", async () => {
    const agent = await startAgent(await config("right-name", { address: consul.address, ...tlsFiles(), tlsServerName: "server.dc1.consul" }), { env: { CONSUL_HTTP_TOKEN: agentToken } });
    await stopAndCollect(agent);
  });

  it("no client certificate while Consul verifies incoming: exit 5", async () => {
    const result = await runCli(["run", "--config", await config("no-client-cert", { address: consul.address, caFile: tls.caFile })], { env: { CONSUL_HTTP_TOKEN: agentToken } });
    expect(result.code).toBe(EXIT.consul);
    expect(result.output).toMatch(/Consul agent unreachable at https:.*TLS: Consul refused the handshake; does it require a client certificate/);
  });

  it("http:// to the HTTPS port: exit 5 saying so", async () => {
    const result = await runCli(["run", "--config", await config("http-to-https", { address: consul.address.replace("https:", "http:"), ...tlsFiles() })], { env: { CONSUL_HTTP_TOKEN: agentToken } });
    expect(result.code).toBe(EXIT.consul);
    expect(result.output).toMatch(/(use https:\/\/|is consul\.address http:\/\/ for an HTTPS port)/);
  });
});

describe("the local HTTP endpoint", () => {
  function get(host: string, port: number, path: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = request({ host, port, path, timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", reject);
      req.end();
    });
  }

  it("binds to loopback when no host is given (the default 127.0.0.1:9731 does too): answers on 127.0.0.1, refuses on the machine's other addresses", async () => {
    // A free port rather than the default 9731, which another agent on this machine may hold;
    // ":port" takes the default host, as the default listen address does.
    const port = await freePort();
    const agent = await startAgent(await config("http-default", { address: consul.address, ...tlsFiles() }, { http: { listen: `:${port}` } }), { env: { CONSUL_HTTP_TOKEN: agentToken } });
    try {
      const line = agent.lines.find((l) => l.includes("http endpoint listening"));
      expect(line).toContain(`"listen":"127.0.0.1:${port}"`);
      expect(await get("127.0.0.1", port, "/healthz")).toBe(200);
      const external = Object.values(networkInterfaces())
        .flat()
        .filter((a) => a && !a.internal && a.family === "IPv4")
        .map((a) => a!.address);
      expect(external.length, "a non-loopback address to probe").toBeGreaterThan(0);
      for (const address of external) await expect(get(address, port, "/healthz")).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await stopAndCollect(agent);
    }
  });
});
