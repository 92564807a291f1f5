import { execFile } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { startAemm, type SimulatedIdentity, type StartedAemm } from "../support/aemm.js";
import { binaryPath } from "../support/binaries.js";
import { BootstrapSandbox, mutatingCalls, type Call } from "../support/bootstrap-sandbox.js";
import { ManagedProcess } from "../support/process.js";
import { evaluateConditions, loadTemplate, REPO, resolve } from "../support/cfn.js";

const run = promisify(execFile);
const SCRIPT = join(REPO, "scripts", "bootstrap.sh");

const IDENTITY: SimulatedIdentity = {
  instanceId: "i-0b00751e5c0ffee01",
  az: "us-east-1b",
  region: "us-east-1",
  vpcId: "vpc-0123456789abcdef0",
  subnetId: "subnet-0b0b0b0b0b0b0b0b0",
  eniId: "eni-0b0b0b0b0b0b0b0b0",
  mac: "0e:42:00:00:00:0b",
  privateIp: "10.42.1.23",
};

const NAT_ENV = {
  RL_ROLE: "nat",
  RL_CLUSTER: "prod-nat",
  RL_VPC_CIDR: "10.42.0.0/16",
  RL_ROUTE_TABLE_IDS: "rtb-0aaa1111aaaa1111a,rtb-0bbb2222bbbb2222b",
  RL_CONSUL_JOIN_TAG_KEY: "routeleader:consul-server",
  RL_CONSUL_JOIN_TAG_VALUE: "prod-nat",
};

/** `routeleader validate --config FILE`, from this checkout. */
async function routeleaderValidate(file: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", "agent/cli.ts", "validate", "--config", file], { cwd: REPO });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

async function consulValidate(file: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(binaryPath("consul"), ["validate", file]);
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

/** `systemd-analyze verify` on unit files; its findings, one per line. */
async function systemdVerify(files: string[]): Promise<string[]> {
  const out = await run("systemd-analyze", ["verify", "--man=no", ...files]).then(
    (r) => r.stdout + r.stderr,
    (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
  );
  return out.split("\n").filter(Boolean);
}

const line = (c: Call) => [c.program, ...c.args].join(" ");

describe("scripts/bootstrap.sh in a sandbox (temp ROOT, recorder stubs on PATH, IMDSv2-only metadata mock)", () => {
  let aemm: StartedAemm;
  const sandboxes: BootstrapSandbox[] = [];
  const sandbox = () => {
    const sb = new BootstrapSandbox();
    sandboxes.push(sb);
    return sb;
  };
  let env: Record<string, string>;

  beforeAll(async () => {
    aemm = await startAemm(IDENTITY, { imdsv2Only: true });
    env = { ...NAT_ENV, RL_IMDS_ENDPOINT: aemm.endpoint };
  });
  afterAll(async () => {
    for (const sb of sandboxes) sb.dispose();
    await aemm?.stop();
  });

  describe("a NAT node, first run then second run", () => {
    let sb: BootstrapSandbox;
    let first: Awaited<ReturnType<BootstrapSandbox["run"]>>;

    beforeAll(async () => {
      sb = sandbox();
      first = await sb.run(SCRIPT, env);
    });

    it("succeeds and logs through the journal (re-executed under systemd-cat)", () => {
      expect(first.code, first.output).toBe(0);
      expect(first.calls[0]).toEqual({ program: "systemd-cat", args: ["--identifier=routeleader-bootstrap", "/bin/bash", SCRIPT] });
      expect(first.output).toContain(`instance ${IDENTITY.instanceId} (${IDENTITY.privateIp}) in us-east-1`);
    });

    it("installs Node.js 20, the pinned Consul and iptables in one dnf transaction, and routeleader with npm-20", () => {
      const installs = first.calls.filter((c) => c.program === "dnf");
      expect(installs.map(line)).toEqual(["dnf install -y --setopt=install_weak_deps=False consul-1.19.2 nodejs20 nodejs20-npm iptables-nft"]);
      expect(sb.read("/etc/yum.repos.d/hashicorp.repo")).toContain("baseurl=https://rpm.releases.hashicorp.com/AmazonLinux/latest/$basearch/stable");
      const npm = first.calls.filter((c) => c.program === "npm-20");
      expect(npm.map(line)).toEqual([`npm-20 install --prefix ${sb.root}/opt/routeleader --omit=dev --no-audit --no-fund routeleader@0.1.0`]);
      expect(first.calls.filter((c) => c.program === "useradd").map((c) => c.args.at(-1))).toEqual(["consul", "routeleader"]);
    });

    it("writes the Consul client config: identity from IMDSv2, no leave on stop, no update check, retry_join by EC2 tag", async () => {
      const hcl = sb.read("/etc/consul.d/consul.hcl");
      expect(hcl).toContain(`node_name = "${IDENTITY.instanceId}"`);
      expect(hcl).toContain(`bind_addr = "${IDENTITY.privateIp}"`);
      expect(hcl).toContain('client_addr = "127.0.0.1"');
      expect(hcl).toMatch(/^leave_on_terminate = false$/m);
      expect(hcl).toMatch(/^skip_leave_on_interrupt = true$/m);
      expect(hcl).toMatch(/^disable_update_check = true$/m);
      expect(hcl).toContain('retry_join = ["provider=aws region=us-east-1 tag_key=routeleader:consul-server tag_value=prod-nat"]');
      expect(hcl).toMatch(/^server = false$/m);
      expect(hcl).not.toContain("gossip_lan"); // default profile: Consul's own timings
      expect(hcl).not.toContain("encrypt");
      expect(sb.mode("/etc/consul.d/consul.hcl")).toBe("640");
      const valid = await consulValidate(join(sb.root, "etc/consul.d/consul.hcl"));
      expect(valid.code, valid.out).toBe(0);
    });

    it("renders a routeleader config that `routeleader validate` accepts, one route per table", async () => {
      const file = join(sb.root, "etc/routeleader/routeleader.yaml");
      const result = await routeleaderValidate(file);
      expect(result.code, result.out).toBe(0);
      expect(result.out).toContain("valid (cluster prod-nat, 2 routes, 2 checks)");
      const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
      expect(cfg.routes).toEqual([
        { name: "nat-rtb-0aaa1111aaaa1111a", table: { id: "rtb-0aaa1111aaaa1111a" }, destination: "0.0.0.0/0", checks: ["egress", "forwarding"] },
        { name: "nat-rtb-0bbb2222bbbb2222b", table: { id: "rtb-0bbb2222bbbb2222b" }, destination: "0.0.0.0/0", checks: ["egress", "forwarding"] },
      ]);
      expect(cfg.region).toBe("us-east-1");
      expect(cfg.discovery).toEqual({ tags: { "routeleader:cluster": "prod-nat" } });
    });

    it("turns on forwarding and MASQUERADE for the VPC CIDR only", () => {
      expect(sb.read("/etc/sysctl.d/90-routeleader-nat.conf")).toMatch(/^net\.ipv4\.ip_forward = 1$/m);
      expect(first.calls.map(line)).toContain("sysctl -p /etc/sysctl.d/90-routeleader-nat.conf");
      expect(first.calls.map(line)).toContain("iptables -t nat -A POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j MASQUERADE");
      const natUnit = sb.read("/etc/systemd/system/routeleader-nat.service");
      expect(natUnit).toContain("Before=routeleader.service");
      expect(natUnit).toContain("iptables -t nat -C POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j MASQUERADE 2>/dev/null || iptables -t nat -A POSTROUTING");
    });

    it("runs routeleader as a non-root user with CAP_NET_RAW only, always restarted, logging to the journal", () => {
      const unit = sb.read("/etc/systemd/system/routeleader.service");
      expect(unit).toMatch(/^User=routeleader$/m);
      expect(unit).toMatch(/^AmbientCapabilities=CAP_NET_RAW$/m);
      expect(unit).toMatch(/^CapabilityBoundingSet=CAP_NET_RAW$/m);
      expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
      expect(unit).toMatch(/^Restart=always$/m);
      expect(unit).toMatch(/^StandardOutput=journal$/m);
      expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node-20 \/opt\/routeleader\/node_modules\/routeleader\/dist\/agent\/cli\.js run --config \/etc\/routeleader\/routeleader\.yaml$/m);
      const consul = sb.read("/etc/systemd/system/consul.service");
      expect(consul).toMatch(/^User=consul$/m);
      expect(consul).toMatch(/^Restart=always$/m);
      expect(consul).toMatch(/^ExecStart=\/usr\/bin\/consul agent -config-dir=\/etc\/consul\.d$/m);
    });

    it("writes systemd units that systemd-analyze verify accepts (apart from programs only the instance has)", async () => {
      const units = ["consul.service", "routeleader-nat.service", "routeleader.service"].map((u) => join(sb.root, "etc/systemd/system", u));
      const problems = (await systemdVerify(units)).filter((l) => !/: Command \S+ is not executable: No such file or directory$/.test(l));
      expect(problems).toEqual([]);
      // The check is real: a misspelt directive is reported.
      const bad = join(sb.dir, "bad.service");
      writeFileSync(bad, sb.read("/etc/systemd/system/routeleader.service").replace("Restart=always", "Restrat=always"));
      expect((await systemdVerify([bad])).some((l) => l.includes("Unknown key 'Restrat'"))).toBe(true);
    });

    it("enables and starts consul, the NAT data plane and routeleader", () => {
      const lines = first.calls.map(line);
      for (const unit of ["consul.service", "routeleader-nat.service", "routeleader.service"]) {
        expect(lines).toContain(`systemctl enable ${unit}`);
        expect(lines).toContain(`systemctl start ${unit}`);
      }
      expect(lines).toContain("systemctl daemon-reload");
    });

    it("a second run changes nothing: byte-identical files, no install, no write, no restart", async () => {
      const before = sb.snapshot();
      const second = await sb.run(SCRIPT, env);
      expect(second.code, second.output).toBe(0);
      expect(sb.snapshot()).toEqual(before);
      expect(mutatingCalls(second.calls).map(line)).toEqual([]);
      expect(second.output).toContain("done: 0 file(s) written, restarted: none");
    });

    it("a changed stack parameter rewrites only what depends on it and restarts only those units", async () => {
      const before = sb.snapshot();
      const third = await sb.run(SCRIPT, { ...env, RL_PROFILE: "fast" });
      expect(third.code, third.output).toBe(0);
      const after = sb.snapshot();
      const changed = [...after.keys()].filter((k) => after.get(k) !== before.get(k));
      expect(changed.sort()).toEqual(["/etc/consul.d/consul.hcl", "/etc/routeleader/routeleader.yaml"]);
      const hcl = sb.read("/etc/consul.d/consul.hcl");
      expect(hcl).toMatch(/probe_interval = "500ms"/);
      expect(hcl).toMatch(/suspicion_mult = 3/);
      expect((await consulValidate(join(sb.root, "etc/consul.d/consul.hcl"))).code).toBe(0);
      expect((await routeleaderValidate(join(sb.root, "etc/routeleader/routeleader.yaml"))).code).toBe(0);
      expect(mutatingCalls(third.calls).map(line)).toEqual([
        `chown root:consul ${third.calls.find((c) => c.program === "chown" && c.args[1]!.includes("consul.hcl"))!.args[1]}`,
        `chown root:root ${third.calls.find((c) => c.program === "chown" && c.args[1]!.includes("routeleader.yaml"))!.args[1]}`,
        "systemctl daemon-reload",
        "systemctl restart consul.service",
        "systemctl restart routeleader.service",
      ]);
    });
  });

  it("reads the gossip key and ACL token from SSM SecureString parameters into files only root and the service read", async () => {
    const sb = sandbox();
    sb.putSsmParameter("/routeleader/prod/gossip-key", "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=");
    sb.putSsmParameter("/routeleader/prod/acl-token", "8f3d6a8e-6b2a-4d2c-9f0e-2b1c5a7e9d10");
    const res = await sb.run(SCRIPT, { ...env, RL_GOSSIP_KEY_PARAM: "/routeleader/prod/gossip-key", RL_ACL_TOKEN_PARAM: "/routeleader/prod/acl-token" });
    expect(res.code, res.output).toBe(0);
    expect(res.calls.filter((c) => c.program === "aws").map(line)).toEqual([
      "aws ssm get-parameter --region us-east-1 --with-decryption --name /routeleader/prod/gossip-key --query Parameter.Value --output text",
      "aws ssm get-parameter --region us-east-1 --with-decryption --name /routeleader/prod/acl-token --query Parameter.Value --output text",
    ]);
    const hcl = sb.read("/etc/consul.d/consul.hcl");
    expect(hcl).toContain('encrypt = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="');
    expect(hcl).toContain('agent = "8f3d6a8e-6b2a-4d2c-9f0e-2b1c5a7e9d10"');
    expect(hcl).not.toContain("initial_management"); // a client never holds the management token
    expect(sb.mode("/etc/consul.d/consul.hcl")).toBe("640");
    expect(sb.read("/etc/routeleader/consul-token")).toBe("8f3d6a8e-6b2a-4d2c-9f0e-2b1c5a7e9d10\n");
    expect(sb.mode("/etc/routeleader/consul-token")).toBe("640");
    expect(res.calls.map(line)).toContain(`chown root:routeleader ${res.calls.find((c) => c.program === "chown" && c.args[1]!.includes("consul-token"))!.args[1]}`);
    expect(sb.read("/etc/routeleader/routeleader.yaml")).toContain("tokenFile: /etc/routeleader/consul-token");
    expect((await consulValidate(join(sb.root, "etc/consul.d/consul.hcl"))).code).toBe(0);
    expect((await routeleaderValidate(join(sb.root, "etc/routeleader/routeleader.yaml"))).code).toBe(0);
  });

  it("selects route tables by tag when no ids are given (one route for all of them)", async () => {
    const sb = sandbox();
    const res = await sb.run(SCRIPT, { ...env, RL_ROUTE_TABLE_IDS: "", RL_ROUTE_TABLE_TAG_KEY: "routeleader/managed", RL_ROUTE_TABLE_TAG_VALUE: "prod-nat" });
    expect(res.code, res.output).toBe(0);
    const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
    expect(cfg.routes).toEqual([
      { name: "nat-default", table: { tags: { "routeleader/managed": "prod-nat" } }, destination: "0.0.0.0/0", checks: ["egress", "forwarding"], preferredAz: "none" },
    ]);
    expect((await routeleaderValidate(join(sb.root, "etc/routeleader/routeleader.yaml"))).code).toBe(0);
  });

  it("a Consul server: server config with bootstrap_expect 3 and the UI on loopback, no NAT, no Node.js", async () => {
    const sb = sandbox();
    sb.putSsmParameter("/routeleader/prod/acl-token", "11111111-2222-3333-4444-555555555555");
    const res = await sb.run(SCRIPT, {
      RL_ROLE: "server",
      RL_CLUSTER: "prod-nat",
      RL_CONSUL_JOIN_TAG_KEY: "routeleader:consul-server",
      RL_CONSUL_JOIN_TAG_VALUE: "prod-nat",
      RL_ACL_TOKEN_PARAM: "/routeleader/prod/acl-token",
      RL_IMDS_ENDPOINT: aemm.endpoint,
    });
    expect(res.code, res.output).toBe(0);
    const hcl = sb.read("/etc/consul.d/consul.hcl");
    expect(hcl).toMatch(/^server = true$/m);
    expect(hcl).toMatch(/^bootstrap_expect = 3$/m);
    expect(hcl).toContain('client_addr = "127.0.0.1"'); // the UI is reachable only through SSM port forwarding
    expect(hcl).toContain('initial_management = "11111111-2222-3333-4444-555555555555"');
    expect((await consulValidate(join(sb.root, "etc/consul.d/consul.hcl"))).code).toBe(0);
    expect(res.calls.filter((c) => c.program === "dnf").map(line)).toEqual(["dnf install -y --setopt=install_weak_deps=False consul-1.19.2"]);
    expect(res.calls.some((c) => c.program === "iptables" || c.program === "npm-20" || c.program === "sysctl")).toBe(false);
    expect(sb.exists("/etc/routeleader")).toBe(false);
    expect(res.calls.filter((c) => c.program === "systemctl" && c.args[0] === "start").map(line)).toEqual(["systemctl start consul.service"]);
  });

  it("refuses to run without a cluster name or route tables, before touching anything", async () => {
    const sb = sandbox();
    const noCluster = await sb.run(SCRIPT, { ...env, RL_CLUSTER: "" });
    expect(noCluster.code).not.toBe(0);
    expect(noCluster.output).toContain("RL_CLUSTER is required");
    const noTables = await sb.run(SCRIPT, { ...env, RL_ROUTE_TABLE_IDS: "" });
    expect(noTables.code).not.toBe(0);
    expect(noTables.output).toContain("set RL_ROUTE_TABLE_IDS or RL_ROUTE_TABLE_TAG_KEY");
    expect(mutatingCalls(noTables.calls)).toEqual([]);
    expect(readdirSync(sb.root)).toEqual([]);
  });

  it("never falls back to IMDSv1: a metadata service that refuses tokens stops the run before any change", async () => {
    // An IMDSv1-only service: the token PUT is refused (403), plain GETs would answer.
    const v1Only = createServer((req, res) => {
      if (req.method === "PUT") {
        res.writeHead(403).end();
        return;
      }
      res.writeHead(200, { "content-type": "text/plain" }).end(req.url?.endsWith("local-ipv4") ? "10.9.9.9" : "i-0v1v1v1v1v1v1v1v1");
    });
    v1Only.listen(0, "127.0.0.1");
    await once(v1Only, "listening");
    try {
      const { port } = v1Only.address() as AddressInfo;
      const sb = sandbox();
      const res = await sb.run(SCRIPT, { ...env, RL_IMDS_ENDPOINT: `http://127.0.0.1:${port}` });
      expect(res.code).not.toBe(0);
      expect(res.output).toMatch(/403/);
      expect(mutatingCalls(res.calls)).toEqual([]);
      expect(readdirSync(sb.root)).toEqual([]);
    } finally {
      v1Only.close();
    }
  });

  it("the NAT launch template's user data, as CloudFormation renders it, is this script and runs in the sandbox", async () => {
    const template = loadTemplate("routeleader-nat.yaml");
    const params = {
      ClusterName: "prod-nat",
      VpcId: "vpc-0123456789abcdef0",
      VpcCidr: "10.42.0.0/16",
      PublicSubnetA: "subnet-0a",
      PublicSubnetB: "subnet-0b",
      PrivateRouteTableIds: "rtb-0aaa1111aaaa1111a,rtb-0bbb2222bbbb2222b",
      "AWS::StackName": "prod-nat",
      "AWS::Region": "us-east-1",
      "AWS::Partition": "aws",
      "AWS::AccountId": "123456789012",
      "AWS::URLSuffix": "amazonaws.com",
    };
    const ctx = evaluateConditions(template, params);
    const userData = resolve(template.Resources.NatLaunchTemplate.Properties.LaunchTemplateData.UserData["Fn::Base64"], ctx) as string;
    const sb = sandbox();
    const file = join(sb.dir, "user-data");
    writeFileSync(file, userData, { mode: 0o755 });
    const res = await sb.run(file, { RL_IMDS_ENDPOINT: aemm.endpoint });
    expect(res.code, res.output).toBe(0);
    const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
    expect(cfg.routes.map((r: { table: { id: string } }) => r.table.id)).toEqual(["rtb-0aaa1111aaaa1111a", "rtb-0bbb2222bbbb2222b"]);
    expect((await routeleaderValidate(join(sb.root, "etc/routeleader/routeleader.yaml"))).code).toBe(0);
    // And shellcheck accepts the whole user data, header included.
    const sc = await run("shellcheck", ["-s", "bash", file]).then(
      () => ({ code: 0, out: "" }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
    expect(sc.code, sc.out).toBe(0);
  });
});

describe("the NAT data plane it configures, for real in network namespaces", () => {
  // private host (10.42.128.10) -> NAT node (10.42.128.1 | 198.51.100.1) -> internet host (198.51.100.2).
  // The internet host has no route back to 10.42.0.0/16: a reply reaches the private host only
  // if the NAT node masquerades. The sysctl file and the iptables rule are exactly the ones the
  // bootstrap wrote and recorded.
  const id = `rl${process.pid % 100000}`;
  const ns = { host: `${id}h`, nat: `${id}n`, net: `${id}i` };
  let aemm: StartedAemm;
  let sb: BootstrapSandbox;
  let masquerade: string[];
  let server: ManagedProcess | undefined;
  const sh = (args: string[]) => run("ip", args);
  const inNs = (name: string, args: string[]) => run("ip", ["netns", "exec", name, ...args]);

  beforeAll(async () => {
    aemm = await startAemm({ ...IDENTITY, instanceId: "i-0da7a91a7e0000001" }, { imdsv2Only: true });
    sb = new BootstrapSandbox();
    const res = await sb.run(SCRIPT, { ...NAT_ENV, RL_IMDS_ENDPOINT: aemm.endpoint });
    expect(res.code, res.output).toBe(0);
    const append = res.calls.find((c) => c.program === "iptables" && c.args.includes("-A"));
    masquerade = append!.args;

    for (const n of Object.values(ns)) await sh(["netns", "add", n]);
    await sh(["link", "add", `${id}a`, "netns", ns.host, "type", "veth", "peer", "name", `${id}b`, "netns", ns.nat]);
    await sh(["link", "add", `${id}c`, "netns", ns.nat, "type", "veth", "peer", "name", `${id}d`, "netns", ns.net]);
    const up = async (n: string, dev: string, addr: string) => {
      await inNs(n, ["ip", "addr", "add", addr, "dev", dev]);
      await inNs(n, ["ip", "link", "set", dev, "up"]);
    };
    await up(ns.host, `${id}a`, "10.42.128.10/20");
    await up(ns.nat, `${id}b`, "10.42.128.1/20");
    await up(ns.nat, `${id}c`, "198.51.100.1/24");
    await up(ns.net, `${id}d`, "198.51.100.2/24");
    await inNs(ns.host, ["ip", "route", "add", "default", "via", "10.42.128.1"]);
    server = new ManagedProcess(
      "ip",
      ["netns", "exec", ns.net, process.execPath, "-e", `require("node:http").createServer((q, r) => r.end(q.socket.remoteAddress)).listen(8080, "198.51.100.2", () => console.log("listening"))`],
      { name: "internet host" },
    );
    await server.waitForLine(/^listening$/, 10_000);
  });

  afterAll(async () => {
    await server?.stop();
    for (const n of Object.values(ns)) await sh(["netns", "del", n]).catch(() => undefined);
    sb?.dispose();
    await aemm?.stop();
  });

  /** What the internet host sees as the client address, or undefined when nothing comes back. */
  const fetchFromPrivateHost = async (): Promise<string | undefined> =>
    inNs(ns.host, ["curl", "-sS", "--max-time", "2", "http://198.51.100.2:8080/"]).then(
      (r) => r.stdout,
      () => undefined,
    );

  it("before the bootstrap's settings, the private host cannot reach the internet host", async () => {
    await inNs(ns.nat, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]);
    expect(await fetchFromPrivateHost()).toBeUndefined();
  });

  it("forwarding alone is not enough: replies have no way back without MASQUERADE", async () => {
    await inNs(ns.nat, ["sysctl", "-q", "-p", join(sb.root, "etc/sysctl.d/90-routeleader-nat.conf")]);
    expect((await inNs(ns.nat, ["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe("1");
    expect(await fetchFromPrivateHost()).toBeUndefined();
  });

  it("with the recorded rule the private host reaches the internet, seen as the NAT node's address", async () => {
    expect(masquerade).toEqual(["-t", "nat", "-A", "POSTROUTING", "-s", "10.42.0.0/16", "!", "-d", "10.42.0.0/16", "-j", "MASQUERADE"]);
    await inNs(ns.nat, ["iptables", ...masquerade]);
    expect(await fetchFromPrivateHost()).toBe("198.51.100.1");
  });
});

describe("shellcheck", () => {
  const scripts = readdirSync(join(REPO, "scripts")).filter((f) => f.endsWith(".sh"));

  it("finds the scripts (bootstrap.sh among them)", () => {
    expect(scripts).toContain("bootstrap.sh");
  });

  it.each(scripts)("scripts/%s is clean", async (name) => {
    const res = await run("shellcheck", ["-x", join("scripts", name)], { cwd: REPO }).then(
      () => ({ code: 0, out: "" }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
    expect(res.code, res.out).toBe(0);
  });

  it("the sandbox recorder (test/support/bootstrap-recorder.sh) is clean", async () => {
    await expect(run("shellcheck", [join(REPO, "test/support/bootstrap-recorder.sh")])).resolves.toBeDefined();
  });

  it("catches a real mistake (an unquoted expansion), so a clean result means something", async () => {
    const dir = new BootstrapSandbox();
    try {
      const bad = join(dir.dir, "bad.sh");
      writeFileSync(bad, '#!/bin/bash\nrm -rf $1/tmp\n');
      await expect(run("shellcheck", [bad])).rejects.toMatchObject({ code: 1 });
    } finally {
      dir.dispose();
    }
  });
});
