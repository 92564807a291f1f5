import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { EC2Client } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { startAemm, type SimulatedIdentity, type StartedAemm } from "../support/aemm.js";
import { binaryPath } from "../support/binaries.js";
import { AwsCli } from "../support/aws-cli.js";
import { BootstrapSandbox, mutatingCalls, type Call, type RunResult } from "../support/bootstrap-sandbox.js";
import { evaluateConditions, loadTemplate, REPO, resolve } from "../support/cfn.js";
import { startConsulDev, type StartedConsul } from "../support/consul.js";
import { makeTlsMaterial, type TlsMaterial } from "../support/consul-secure.js";
import { ConsulApi, ConsulConnection } from "../../agent/consul/index.js";
import { createSubnet, createTable, createVpc, identityOf, readRoute, runInstance } from "../support/ec2-world.js";
import { startHttpRelay } from "../support/http-relay.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import { freePort, freePorts } from "../support/ports.js";
import { ManagedProcess, waitUntil } from "../support/process.js";
import { buildRelease, sha256Of, type ReleaseArtifact } from "../support/release.js";
import { s3Upload } from "../support/s3.js";

const run = promisify(execFile);
const SCRIPT = join(REPO, "scripts", "bootstrap.sh");
const BUCKET = "rl-artifacts";
const LOG_GROUP = "/routeleader/prod-nat/agents";

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

/**
 * Shared by every suite of this file: the release artifact (`npm run release`), moto with an S3
 * bucket holding it, a tampered copy, and Consul (the locally built binary, as HashiCorp's
 * release zip and bare), and one IMDSv2-only metadata mock.
 */
const world = {} as {
  artifact: ReleaseArtifact;
  moto: StartedMoto;
  aws: AwsCli;
  aemm: StartedAemm;
  consulSha: string;
  consulZipSha: string;
  tamperedSha: string;
  /** The release extracted once, shared by the sandboxes that run bootstrap.sh directly. */
  extracted: string;
  /** Environment of a NAT node's bootstrap.sh run (RL_RELEASE_DIR is per sandbox). */
  natEnv: Record<string, string>;
};

beforeAll(async () => {
  world.artifact = await buildRelease();
  world.moto = await startMoto();
  world.aws = await AwsCli.start(world.moto.endpoint);
  world.extracted = join(world.artifact.dir, "extracted");
  mkdirSync(world.extracted);
  await run("tar", ["-xzf", world.artifact.tarball, "-C", world.extracted]);
  const consul = binaryPath("consul");
  const zip = join(world.artifact.dir, "consul.zip");
  await run(join(binaryPath("moto"), "..", "python"), ["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[2], 'consul')", zip, consul]);
  const good = readFileSync(world.artifact.tarball);
  // Tampered: the same tarball with a byte changed in its last block.
  const tampered = Buffer.from(good);
  tampered[tampered.length - 9] = tampered[tampered.length - 9]! ^ 0xff;
  await s3Upload(world.moto.endpoint, BUCKET, {
    [`releases/${world.artifact.fileName}`]: good,
    "releases/tampered.tar.gz": tampered,
    "mirror/consul.zip": readFileSync(zip),
    "mirror/consul": readFileSync(consul),
  });
  world.tamperedSha = sha256Of(Buffer.from(tampered));
  world.consulSha = sha256Of(consul);
  world.consulZipSha = sha256Of(zip);
  world.aemm = await startAemm(IDENTITY, { imdsv2Only: true });
  world.natEnv = {
    RL_ROLE: "nat",
    RL_CLUSTER: "prod-nat",
    RL_VPC_CIDR: "10.42.0.0/16",
    RL_ROUTE_TABLE_IDS: "rtb-0aaa1111aaaa1111a,rtb-0bbb2222bbbb2222b",
    RL_CONSUL_JOIN_TAG_KEY: "routeleader:consul-server",
    RL_CONSUL_JOIN_TAG_VALUE: "prod-nat",
    RL_CONSUL_URL: `s3://${BUCKET}/mirror/consul.zip`,
    RL_CONSUL_SHA256: world.consulZipSha,
    RL_LIFECYCLE_HOOK: "routeleader-release",
    RL_IMDS_ENDPOINT: world.aemm.endpoint,
    // The suites below test everything else; secure mode (the default) has its own tests.
    RL_CONSUL_SECURITY: "insecure",
  };
});
afterAll(async () => {
  await world.aemm?.stop();
  await world.aws?.stop();
  await world.moto?.stop();
  if (world.artifact) await rm(world.artifact.dir, { recursive: true, force: true });
});

const sandboxes: BootstrapSandbox[] = [];
afterAll(async () => {
  await Promise.all(sandboxes.map((sb) => rm(sb.dir, { recursive: true, force: true })));
});
function sandbox(): BootstrapSandbox {
  const sb = new BootstrapSandbox({ aws: world.aws });
  sandboxes.push(sb);
  return sb;
}
/** A sandbox holding the release where the user data would have extracted it (a link to one shared copy). */
function sandboxWithRelease(): { sb: BootstrapSandbox; env: Record<string, string> } {
  const sb = sandbox();
  const releaseDir = sb.linkRelease(world.extracted, world.artifact.sha256);
  return { sb, env: { ...world.natEnv, RL_RELEASE_DIR: releaseDir } };
}

/** `routeleader validate --config FILE` with the release's own CLI, under plain node. */
async function releaseValidate(sb: BootstrapSandbox, file: string): Promise<{ code: number; out: string }> {
  const cli = join(sb.root, "opt/routeleader/releases", world.artifact.sha256, "routeleader/dist/agent/cli.js");
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, "validate", "--config", file], { cwd: sb.dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
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

describe("scripts/bootstrap.sh in a sandbox (temp ROOT, recorder stubs on PATH, moto S3, IMDSv2-only metadata mock)", () => {
  describe("a NAT node, first run then second run", () => {
    let sb: BootstrapSandbox;
    let env: Record<string, string>;
    let first: RunResult;

    beforeAll(async () => {
      ({ sb, env } = sandboxWithRelease());
      // As the stack's launch template sets them: the agents' EMF lines are shipped.
      env = { ...env, RL_LOG_GROUP: LOG_GROUP, RL_METRICS_NAMESPACE: "routeleader" };
      first = await sb.run(SCRIPT, env);
    });

    it("succeeds and logs through the journal (re-executed under systemd-cat)", () => {
      expect(first.code, first.output).toBe(0);
      expect(first.calls[0]).toEqual({ program: "systemd-cat", args: ["--identifier=routeleader-bootstrap", "/bin/bash", SCRIPT] });
      expect(first.output).toContain(`instance ${IDENTITY.instanceId} (${IDENTITY.privateIp}) in us-east-1`);
    });

    it("ship: installs Node.js 22, iptables, the CloudWatch agent and logrotate from the distribution in one dnf transaction, nothing from npm or a third-party repository", () => {
      const installs = first.calls.filter((c) => c.program === "dnf");
      expect(installs.map(line)).toEqual(["dnf install -y --setopt=install_weak_deps=False nodejs22 iptables-nft amazon-cloudwatch-agent logrotate"]);
      expect(sb.exists("/etc/yum.repos.d")).toBe(false);
      expect(first.calls.some((c) => c.program.startsWith("npm"))).toBe(false);
      expect(first.calls.filter((c) => c.program === "useradd").map((c) => c.args.at(-1))).toEqual(["consul", "routeleader"]);
    });

    it("ship: installs Consul from the S3 zip only after checking its sha256, into /usr/local/bin", () => {
      const downloads = first.calls.filter((c) => c.program === "aws" && c.args[0] === "s3");
      expect(downloads).toHaveLength(1);
      expect(line(downloads[0]!)).toMatch(new RegExp(`^aws s3 cp --only-show-errors --region us-east-1 s3://${BUCKET}/mirror/consul\\.zip ${sb.root}/var/tmp/consul\\.\\w+/download$`));
      expect(sha256Of(join(sb.root, "usr/local/bin/consul"))).toBe(world.consulSha);
      expect(sb.mode("/usr/local/bin/consul")).toBe("755");
      expect(sb.read("/var/lib/routeleader/consul.sha256")).toBe(`${world.consulZipSha}\n`);
      expect(readdirSync(join(sb.root, "var/tmp"))).toEqual([]); // the download is gone
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

    it("ship: renders a routeleader config that the release's own CLI validates: one route per table, the lifecycle hook named", async () => {
      const file = join(sb.root, "etc/routeleader/routeleader.yaml");
      const result = await releaseValidate(sb, file);
      expect(result.code, result.out).toBe(0);
      expect(result.out).toContain("valid (cluster prod-nat, 2 routes, 2 checks)");
      const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
      expect(cfg.routes).toEqual([
        { name: "nat-rtb-0aaa1111aaaa1111a", table: { id: "rtb-0aaa1111aaaa1111a" }, destination: "0.0.0.0/0", checks: ["egress", "forwarding"] },
        { name: "nat-rtb-0bbb2222bbbb2222b", table: { id: "rtb-0bbb2222bbbb2222b" }, destination: "0.0.0.0/0", checks: ["egress", "forwarding"] },
      ]);
      expect(cfg.region).toBe("us-east-1");
      expect(cfg.discovery).toEqual({ tags: { "routeleader:cluster": "prod-nat" } });
      expect(cfg.lifecycle).toEqual({ hookName: "routeleader-release" });
      // The egress check does not depend on one public address: any of three answering passes.
      expect(cfg.checks.egress).toEqual({ type: "ping", host: ["1.1.1.1", "8.8.8.8", "9.9.9.9"] });
    });

    it("egress: ships the agent's EMF lines: EMF on into a file of the agent's own log directory, the CloudWatch agent tailing it into the stack's group, logrotate", () => {
      const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
      expect(cfg.observe).toEqual({ cloudwatch: { emf: true, namespace: "routeleader", output: "/var/log/routeleader/emf.log" } });
      // ProtectSystem=strict: the directory is the unit's LogsDirectory, owned by the agent's user.
      const unit = sb.read("/etc/systemd/system/routeleader.service");
      expect(unit).toMatch(/^LogsDirectory=routeleader$/m);
      expect(unit).toMatch(/^LogsDirectoryMode=0750$/m);
      // Keys as in the CloudWatch agent's schema (translator/config/schema.json): logs only, no metrics.
      const cw = JSON.parse(sb.read("/etc/routeleader/cloudwatch-agent.json"));
      expect(cw).toEqual({
        agent: { region: "us-east-1" },
        logs: {
          logs_collected: { files: { collect_list: [{ file_path: cfg.observe.cloudwatch.output, log_group_name: LOG_GROUP, log_stream_name: "{instance_id}", timezone: "UTC" }] } },
          force_flush_interval: 15,
        },
      });
      expect(first.calls.map(line)).toContain("amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -c file:/etc/routeleader/cloudwatch-agent.json -s");
      const rotate = sb.read("/etc/logrotate.d/routeleader");
      expect(rotate.startsWith("/var/log/routeleader/emf.log {")).toBe(true);
      for (const d of ["su routeleader routeleader", "daily", "maxsize 20M", "rotate 3", "missingok", "create 0640 routeleader routeleader"]) expect(rotate).toMatch(new RegExp(`^\\s+${d}$`, "m"));
    });

    it("egress: a bad log group or namespace is refused before anything is written", async () => {
      for (const [v, value, says] of [
        ["RL_LOG_GROUP", "agents;rm -rf", "RL_LOG_GROUP 'agents;rm -rf' is not a CloudWatch Logs group name"],
        ["RL_METRICS_NAMESPACE", "AWS/EC2", "RL_METRICS_NAMESPACE 'AWS/EC2' is not a custom CloudWatch namespace"],
      ] as const) {
        const fresh = sandboxWithRelease();
        const r = await fresh.sb.run(SCRIPT, { ...fresh.env, RL_LOG_GROUP: LOG_GROUP, [v]: value });
        expect(r.code, r.output).not.toBe(0);
        expect(r.output).toContain(says);
        expect(mutatingCalls(r.calls).map(line)).toEqual([]);
        expect(fresh.sb.exists("/etc")).toBe(false);
      }
    });

    it("ship: points /opt/routeleader/current at the verified release", () => {
      expect(readlinkSync(join(sb.root, "opt/routeleader/current"))).toBe(env.RL_RELEASE_DIR);
    });

    it("turns on forwarding and MASQUERADE for the VPC CIDR only", () => {
      expect(sb.read("/etc/sysctl.d/90-routeleader-nat.conf")).toMatch(/^net\.ipv4\.ip_forward = 1$/m);
      expect(first.calls.map(line)).toContain("sysctl -p /etc/sysctl.d/90-routeleader-nat.conf");
      expect(first.calls.map(line)).toContain("iptables -t nat -A POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j MASQUERADE");
      const natUnit = sb.read("/etc/systemd/system/routeleader-nat.service");
      expect(natUnit).toContain("Before=routeleader.service");
      expect(natUnit).toContain("iptables -t nat -C POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j MASQUERADE 2>/dev/null || iptables -t nat -A POSTROUTING");
    });

    it("runs routeleader as a non-root user with CAP_NET_RAW only, under node-22 from the release, always restarted, logging to the journal", () => {
      const unit = sb.read("/etc/systemd/system/routeleader.service");
      expect(unit).toMatch(/^User=routeleader$/m);
      expect(unit).toMatch(/^AmbientCapabilities=CAP_NET_RAW$/m);
      expect(unit).toMatch(/^CapabilityBoundingSet=CAP_NET_RAW$/m);
      expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
      expect(unit).toMatch(/^Restart=always$/m);
      expect(unit).toMatch(/^StandardOutput=journal$/m);
      expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node-22 --lite-mode --single-threaded-gc \/opt\/routeleader\/current\/dist\/agent\/cli\.js run --config \/etc\/routeleader\/routeleader\.yaml$/m);
      // glibc hands freed blocks of 32 KiB and more back to the kernel (AGENT_ENV of scripts/build-agent.mjs).
      expect(unit).toMatch(/^Environment=GLIBC_TUNABLES=glibc\.malloc\.mmap_threshold=32768$/m);
      const consul = sb.read("/etc/systemd/system/consul.service");
      expect(consul).toMatch(/^User=consul$/m);
      expect(consul).toMatch(/^Restart=always$/m);
      expect(consul).toMatch(/^ExecStart=\/usr\/local\/bin\/consul agent -config-dir=\/etc\/consul\.d$/m);
    });

    it("ship: a crash loop (5 starts in 2 minutes) marks the instance unhealthy in its Auto Scaling group", () => {
      const unit = sb.read("/etc/systemd/system/routeleader.service");
      expect(unit).toMatch(/^StartLimitIntervalSec=120$/m);
      expect(unit).toMatch(/^StartLimitBurst=5$/m);
      expect(unit).toMatch(/^OnFailure=routeleader-unhealthy\.service$/m);
      // [Unit] settings: before [Service].
      expect(unit.indexOf("OnFailure=")).toBeLessThan(unit.indexOf("[Service]"));
      const unhealthy = sb.read("/etc/systemd/system/routeleader-unhealthy.service");
      expect(unhealthy).toContain(`ExecStart=/usr/bin/aws autoscaling set-instance-health --region us-east-1 --instance-id ${IDENTITY.instanceId} --health-status Unhealthy --no-should-respect-grace-period`);
      expect(unhealthy).toMatch(/^Type=oneshot$/m);
    });

    it("writes systemd units that systemd-analyze verify accepts (apart from programs only the instance has)", async () => {
      const units = ["consul.service", "routeleader-nat.service", "routeleader.service", "routeleader-unhealthy.service"].map((u) => join(sb.root, "etc/systemd/system", u));
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

    it("a second run changes nothing: byte-identical files, no download, no install, no write, no restart", async () => {
      const before = sb.snapshot();
      const second = await sb.run(SCRIPT, env);
      expect(second.code, second.output).toBe(0);
      expect(sb.snapshot()).toEqual(before);
      expect(mutatingCalls(second.calls).map(line)).toEqual([]);
      expect(second.calls.some((c) => c.program === "aws")).toBe(false);
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
      expect((await releaseValidate(sb, join(sb.root, "etc/routeleader/routeleader.yaml"))).code).toBe(0);
      expect(mutatingCalls(third.calls).map(line)).toEqual([
        `chown root:consul ${third.calls.find((c) => c.program === "chown" && c.args[1]!.includes("consul.hcl"))!.args[1]}`,
        `chown root:root ${third.calls.find((c) => c.program === "chown" && c.args[1]!.includes("routeleader.yaml"))!.args[1]}`,
        "systemctl daemon-reload",
        "systemctl restart consul.service",
        "systemctl restart routeleader.service",
      ]);
    });

    it("ship: a new Consul binary (new URL and sha256) is downloaded, verified and restarts Consul only", async () => {
      const res = await sb.run(SCRIPT, { ...env, RL_PROFILE: "fast", RL_CONSUL_URL: `s3://${BUCKET}/mirror/consul`, RL_CONSUL_SHA256: world.consulSha });
      expect(res.code, res.output).toBe(0);
      expect(sb.read("/var/lib/routeleader/consul.sha256")).toBe(`${world.consulSha}\n`);
      expect(sha256Of(join(sb.root, "usr/local/bin/consul"))).toBe(world.consulSha);
      expect(res.calls.filter((c) => c.program === "systemctl" && c.args[0] === "restart").map(line)).toEqual(["systemctl restart consul.service"]);
    });
  });

  it("ship: a Consul download whose sha256 differs is refused: the reason is reported, nothing is installed", async () => {
    const { sb, env } = sandboxWithRelease();
    const reasonFile = join(sb.dir, "reason");
    const res = await sb.run(SCRIPT, { ...env, RL_CONSUL_SHA256: world.consulSha /* the bare binary's, not the zip's */, RL_FAILURE_FILE: reasonFile });
    expect(res.code).not.toBe(0);
    const reason = `sha256 mismatch for s3://${BUCKET}/mirror/consul.zip: expected ${world.consulSha}, got ${world.consulZipSha}; nothing installed`;
    expect(res.output).toContain(`ERROR: ${reason}`);
    expect(readFileSync(reasonFile, "utf8")).toBe(`${reason}\n`);
    expect(sb.exists("/usr/local/bin/consul")).toBe(false);
    expect(readdirSync(join(sb.root, "var/tmp")).flatMap((d) => readdirSync(join(sb.root, "var/tmp", d)))).toEqual([]);
    expect(res.calls.some((c) => c.program === "systemctl" && c.args[0] !== "is-active" && c.args[0] !== "is-enabled")).toBe(false);
  });

  it("ship: reads the gossip key and ACL token from SSM; the token file is 0600 and readable by the agent's user only", async () => {
    const { sb, env } = sandboxWithRelease();
    sb.putSsmParameter("/routeleader/prod/gossip-key", "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=");
    sb.putSsmParameter("/routeleader/prod/acl-token", "8f3d6a8e-6b2a-4d2c-9f0e-2b1c5a7e9d10");
    const res = await sb.run(SCRIPT, { ...env, RL_GOSSIP_KEY_PARAM: "/routeleader/prod/gossip-key", RL_ACL_TOKEN_PARAM: "/routeleader/prod/acl-token" });
    expect(res.code, res.output).toBe(0);
    expect(res.calls.filter((c) => c.program === "aws" && c.args[0] === "ssm").map(line)).toEqual([
      "aws ssm get-parameter --region us-east-1 --with-decryption --name /routeleader/prod/gossip-key --query Parameter.Value --output text",
      "aws ssm get-parameter --region us-east-1 --with-decryption --name /routeleader/prod/acl-token --query Parameter.Value --output text",
    ]);
    const hcl = sb.read("/etc/consul.d/consul.hcl");
    expect(hcl).toContain('encrypt = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="');
    expect(hcl).toContain('agent = "8f3d6a8e-6b2a-4d2c-9f0e-2b1c5a7e9d10"');
    expect(hcl).not.toContain("initial_management"); // a client never holds the management token
    expect(sb.mode("/etc/consul.d/consul.hcl")).toBe("640");
    expect(sb.read("/etc/routeleader/consul-token")).toBe("8f3d6a8e-6b2a-4d2c-9f0e-2b1c5a7e9d10\n");
    expect(sb.mode("/etc/routeleader/consul-token")).toBe("600");
    expect(res.calls.map(line)).toContain(`chown routeleader:routeleader ${res.calls.find((c) => c.program === "chown" && c.args[1]!.includes("consul-token"))!.args[1]}`);
    expect(sb.read("/etc/routeleader/routeleader.yaml")).toContain("tokenFile: /etc/routeleader/consul-token");
    expect((await consulValidate(join(sb.root, "etc/consul.d/consul.hcl"))).code).toBe(0);
    expect((await releaseValidate(sb, join(sb.root, "etc/routeleader/routeleader.yaml"))).code).toBe(0);
  });

  it("selects route tables by tag when no ids are given (one route for all of them)", async () => {
    const { sb, env } = sandboxWithRelease();
    const res = await sb.run(SCRIPT, { ...env, RL_ROUTE_TABLE_IDS: "", RL_ROUTE_TABLE_TAG_KEY: "routeleader/managed", RL_ROUTE_TABLE_TAG_VALUE: "prod-nat" });
    expect(res.code, res.output).toBe(0);
    const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
    expect(cfg.routes).toEqual([
      { name: "nat-default", table: { tags: { "routeleader/managed": "prod-nat" } }, destination: "0.0.0.0/0", checks: ["egress", "forwarding"], preferredAz: "none" },
    ]);
    expect((await releaseValidate(sb, join(sb.root, "etc/routeleader/routeleader.yaml"))).code).toBe(0);
  });

  describe("same-AZ mode (RL_SAME_AZ): SNAT to the pair's secondary IP, conntrackd synced with the peer NAT of the subnet", () => {
    const SAME_AZ_IP = "10.42.1.200";
    const EIP = "eipalloc-0123456789abcdef0";
    const ROUTE = "nat-rtb-0aaa1111aaaa1111a";
    let me: SimulatedIdentity;
    let peerIp: string;
    let aemm: StartedAemm;
    let sb: BootstrapSandbox;
    let env: Record<string, string>;
    let res: RunResult;
    const ns = `rlct${process.pid % 100000}`;

    beforeAll(async () => {
      // This node and its peer: two instances of the cluster in one subnet, in moto.
      const ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: world.moto.endpoint });
      const { vpcId } = await createVpc(ec2, "10.42.0.0/16");
      const subnet = await createSubnet(ec2, vpcId, "10.42.1.0/24");
      const self = await runInstance(ec2, subnet, { "routeleader:cluster": "prod-nat" });
      const peer = await runInstance(ec2, subnet, { "routeleader:cluster": "prod-nat" });
      await runInstance(ec2, subnet, { "routeleader:cluster": "other-cluster" });
      ec2.destroy();
      peerIp = peer.PrivateIpAddress!;
      me = { ...identityOf(self), mac: "0e:42:00:00:00:0c", region: "us-east-1" };
      aemm = await startAemm(me, { imdsv2Only: true });
      ({ sb, env } = sandboxWithRelease());
      // The instance's network interfaces, as /sys/class/net shows them.
      for (const [dev, mac] of [["lo", "00:00:00:00:00:00"], ["ens5", me.mac]] as const) {
        mkdirSync(join(sb.root, "sys/class/net", dev), { recursive: true });
        writeFileSync(join(sb.root, "sys/class/net", dev, "address"), `${mac}\n`);
      }
      env = { ...env, RL_IMDS_ENDPOINT: aemm.endpoint, RL_SAME_AZ: `${ROUTE}=${me.subnetId}:${SAME_AZ_IP}:${EIP}, nat-rtb-0bbb2222bbbb2222b=subnet-0ffff0000ffff0000:10.42.2.200:eipalloc-0fedcba9876543210` };
      res = await sb.run(SCRIPT, env);
    });
    afterAll(async () => {
      await aemm?.stop();
      await run("ip", ["netns", "del", ns]).catch(() => undefined);
    });

    it("SNATs the VPC's egress to the pair's secondary IP instead of MASQUERADE, with strict TCP tracking, at every boot", () => {
      expect(res.code, res.output).toBe(0);
      const rules = res.calls.filter((c) => c.program === "iptables" && c.args.includes("-A")).map(line);
      expect(rules).toEqual([`iptables -t nat -A POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j SNAT --to-source ${SAME_AZ_IP}`]);
      expect(sb.read("/etc/sysctl.d/91-routeleader-same-az.conf")).toMatch(/^net\.netfilter\.nf_conntrack_tcp_loose = 0$/m);
      const calls = res.calls.map(line);
      // The sysctl key exists once the nat table loaded nf_conntrack: after the rule.
      expect(calls.indexOf("sysctl -p /etc/sysctl.d/91-routeleader-same-az.conf")).toBeGreaterThan(calls.indexOf(rules[0]!));
      const natUnit = sb.read("/etc/systemd/system/routeleader-nat.service");
      expect(natUnit).toContain(`iptables -t nat -C POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j SNAT --to-source ${SAME_AZ_IP} 2>/dev/null || iptables -t nat -A`);
      expect(natUnit.indexOf("91-routeleader-same-az.conf")).toBeGreaterThan(natUnit.indexOf("iptables -t nat -C"));
      expect(natUnit).not.toContain("MASQUERADE");
    });

    it("ship: installs conntrackd from the distribution (conntrack-tools) in the same dnf transaction", () => {
      expect(res.calls.filter((c) => c.program === "dnf").map(line)).toEqual(["dnf install -y --setopt=install_weak_deps=False nodejs22 iptables-nft conntrack-tools"]);
    });

    it("gives the pair's route its Elastic IP and sameAz; the other AZ's route stays as it was; the release validates it", async () => {
      const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
      expect(cfg.routes).toEqual([
        { name: ROUTE, table: { id: "rtb-0aaa1111aaaa1111a" }, destination: "0.0.0.0/0", checks: ["egress", "forwarding"], eip: EIP, sameAz: { subnet: me.subnetId, privateIp: SAME_AZ_IP } },
        {
          name: "nat-rtb-0bbb2222bbbb2222b",
          table: { id: "rtb-0bbb2222bbbb2222b" },
          destination: "0.0.0.0/0",
          checks: ["egress", "forwarding"],
          eip: "eipalloc-0fedcba9876543210",
          sameAz: { subnet: "subnet-0ffff0000ffff0000", privateIp: "10.42.2.200" },
        },
      ]);
      const v = await releaseValidate(sb, join(sb.root, "etc/routeleader/routeleader.yaml"));
      expect(v.code, v.out).toBe(0);
    });

    it("finds the peer (the other running NAT of the cluster in its subnet) and writes the conntrackd config the simulator runs", async () => {
      const conf = sb.read("/etc/routeleader/conntrackd.conf");
      const { stdout } = await run("bash", [join(REPO, "scripts/conntrackd-sync.sh"), "render", me.privateIp, peerIp, "ens5"]);
      expect(conf).toBe(stdout);
      expect(conf).toMatch(new RegExp(`^ {4}IPv4_address ${me.privateIp.replaceAll(".", "\\.")}$`, "m"));
      expect(conf).toMatch(new RegExp(`^ {4}IPv4_Destination_Address ${peerIp.replaceAll(".", "\\.")}$`, "m"));
      expect(conf).toMatch(/^ {4}Interface ens5$/m);
      expect(conf).toMatch(/Mode FTFW \{\n {4}DisableExternalCache On/);
      expect(sb.read("/etc/routeleader/same-az.env")).toContain(`SUBNET=${me.subnetId}\n`);
    });

    it("the rendered config is one conntrackd accepts and starts with (in a namespace with the instance's address on a veth named ens5)", async () => {
      const dir = join(sb.dir, "ct");
      mkdirSync(dir);
      // Lock and socket under the test's folder, not the host's /var.
      const conf = sb.read("/etc/routeleader/conntrackd.conf").replace("/var/lock/conntrackd.lock", join(dir, "lock")).replace("/var/run/conntrackd.ctl", join(dir, "sock"));
      writeFileSync(join(dir, "ok.conf"), conf);
      writeFileSync(join(dir, "bad.conf"), conf.replace("DisableExternalCache On", "DisableExternalCash On"));
      await run("ip", ["netns", "add", ns]);
      await run("ip", ["-n", ns, "link", "add", "ens5", "type", "veth", "peer", "name", "ens5p"]);
      await run("ip", ["-n", ns, "addr", "add", `${me.privateIp}/24`, "dev", "ens5"]);
      await run("ip", ["-n", ns, "link", "set", "ens5", "up"]);
      const ok = new ManagedProcess("ip", ["netns", "exec", ns, "conntrackd", "-C", join(dir, "ok.conf")], { name: "conntrackd (rendered config)", keepLines: 50 });
      try {
        await ok.waitForLine(/initialization completed/, 20_000);
        expect(ok.hasExited).toBe(false);
      } finally {
        await ok.stop(3000);
      }
      // The check bites: a misspelt keyword is a parse error and conntrackd exits.
      const bad = await run("ip", ["netns", "exec", ns, "conntrackd", "-C", join(dir, "bad.conf")]).then(
        () => ({ code: 0, out: "" }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
      expect(bad.code).not.toBe(0);
      expect(bad.out).toContain("syntax error");
    });

    it("starts conntrackd (and its peer timer) before the agent, and orders the agent after it", () => {
      const calls = res.calls.map(line);
      const agentStart = calls.indexOf("systemctl start routeleader.service");
      expect(agentStart).toBeGreaterThan(0);
      expect(calls.indexOf("systemctl restart routeleader-conntrackd.service")).toBeGreaterThan(-1);
      expect(calls.indexOf("systemctl restart routeleader-conntrackd.service")).toBeLessThan(agentStart);
      for (const u of ["routeleader-conntrackd.service", "routeleader-conntrackd-peer.timer"]) expect(calls).toContain(`systemctl enable ${u}`);
      expect(sb.read("/etc/systemd/system/routeleader.service")).toMatch(/^After=.* routeleader-conntrackd\.service$/m);
      const ct = sb.read("/etc/systemd/system/routeleader-conntrackd.service");
      expect(ct).toMatch(/^Before=routeleader\.service$/m);
      expect(ct).toMatch(/^ExecStart=\/usr\/sbin\/conntrackd -C \/etc\/routeleader\/conntrackd\.conf$/m);
    });

    it("writes conntrackd units that systemd-analyze verify accepts", async () => {
      const units = ["routeleader-conntrackd.service", "routeleader-conntrackd-peer.service", "routeleader-conntrackd-peer.timer", "routeleader.service", "routeleader-nat.service"].map((u) => join(sb.root, "etc/systemd/system", u));
      const problems = (await systemdVerify(units)).filter((l) => !/: Command \S+ is not executable: No such file or directory$/.test(l) && !/routeleader-conntrackd-peer\.timer: Refusing to start, unit .* does not exist/.test(l));
      expect(problems).toEqual([]);
    });

    it("a second run changes nothing, and the peer refresh rewrites nothing while the peer is the same", async () => {
      const before = sb.snapshot();
      const second = await sb.run(SCRIPT, env);
      expect(second.code, second.output).toBe(0);
      expect(sb.snapshot()).toEqual(before);
      expect(mutatingCalls(second.calls).map(line)).toEqual([]);
      expect(second.output).toContain("done: 0 file(s) written, restarted: none");
    });

    it("a node outside every pair's subnet MASQUERADEs as before and installs no conntrackd", async () => {
      const other = sandboxWithRelease();
      const r = await other.sb.run(SCRIPT, { ...other.env, RL_SAME_AZ: `${ROUTE}=subnet-0ffff0000ffff0000:${SAME_AZ_IP}:${EIP}` });
      expect(r.code, r.output).toBe(0);
      expect(r.calls.filter((c) => c.program === "iptables" && c.args.includes("-A")).map(line)).toEqual(["iptables -t nat -A POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j MASQUERADE"]);
      expect(r.calls.filter((c) => c.program === "dnf").map(line)).toEqual(["dnf install -y --setopt=install_weak_deps=False nodejs22 iptables-nft"]);
      expect(other.sb.exists("/etc/routeleader/conntrackd.conf")).toBe(false);
      expect(other.sb.exists("/etc/systemd/system/routeleader-conntrackd.service")).toBe(false);
      expect(r.output).toContain("MASQUERADE to");
    });

    it.each([
      ["nat-rtb-0aaa1111aaaa1111a=subnet-0aaa:10.42.1.200", "expected ROUTE=SUBNET:PRIVATE_IP:EIP_ALLOCATION"],
      ["nat-rtb-0aaa1111aaaa1111a=subnet-0aaa:10.42.1.300:eipalloc-0123456789abcdef0", "expected ROUTE=SUBNET:PRIVATE_IP:EIP_ALLOCATION"],
      ["nat-rtb-0ccc=subnet-0aaa:10.42.1.200:eipalloc-0123456789abcdef0", "nat-rtb-0ccc is not one of this node's routes (nat-rtb-0aaa1111aaaa1111a nat-rtb-0bbb2222bbbb2222b)"],
      [
        "nat-rtb-0aaa1111aaaa1111a=subnet-0aaa:10.42.1.200:eipalloc-0123456789abcdef0,nat-rtb-0bbb2222bbbb2222b=subnet-0aaa:10.42.1.201:eipalloc-0fedcba9876543210",
        "subnet-0aaa is already the pair of nat-rtb-0aaa1111aaaa1111a",
      ],
      [
        "nat-rtb-0aaa1111aaaa1111a=subnet-0aaa:10.42.1.200:eipalloc-0123456789abcdef0,nat-rtb-0bbb2222bbbb2222b=subnet-0bbb:10.42.1.200:eipalloc-0fedcba9876543210",
        "10.42.1.200 is already the address of nat-rtb-0aaa1111aaaa1111a",
      ],
    ])("a bad RL_SAME_AZ (%s) is refused before anything is written", async (value, message) => {
      const bad = sandboxWithRelease();
      const r = await bad.sb.run(SCRIPT, { ...bad.env, RL_SAME_AZ: value });
      expect(r.code).not.toBe(0);
      expect(r.output).toContain(`ERROR: RL_SAME_AZ`);
      expect(r.output).toContain(message);
      expect(mutatingCalls(r.calls).map(line)).toEqual([]);
      expect(bad.sb.exists("/etc")).toBe(false);
    });

    it("an IPv6 destination with RL_SAME_AZ is refused", async () => {
      const bad = sandboxWithRelease();
      const r = await bad.sb.run(SCRIPT, { ...bad.env, RL_DESTINATION: "::/0", RL_SAME_AZ: `${ROUTE}=subnet-0aaa:${SAME_AZ_IP}:${EIP}` });
      expect(r.code).not.toBe(0);
      expect(r.output).toContain("ERROR: RL_SAME_AZ: the same-AZ mode SNATs IPv4; RL_DESTINATION ::/0 is IPv6");
      expect(mutatingCalls(r.calls)).toEqual([]);
    });
  });

  it("a Consul server: server config with bootstrap_expect 3 and the UI on loopback, no NAT, no Node.js, no package at all", async () => {
    const sb = sandbox();
    sb.putSsmParameter("/routeleader/prod/acl-token", "11111111-2222-3333-4444-555555555555");
    const res = await sb.run(SCRIPT, {
      RL_ROLE: "server",
      RL_CLUSTER: "prod-nat",
      RL_CONSUL_JOIN_TAG_KEY: "routeleader:consul-server",
      RL_CONSUL_JOIN_TAG_VALUE: "prod-nat",
      RL_ACL_TOKEN_PARAM: "/routeleader/prod/acl-token",
      RL_CONSUL_SECURITY: "insecure",
      RL_CONSUL_URL: world.natEnv.RL_CONSUL_URL!,
      RL_CONSUL_SHA256: world.consulZipSha,
      RL_IMDS_ENDPOINT: world.aemm.endpoint,
    });
    expect(res.code, res.output).toBe(0);
    const hcl = sb.read("/etc/consul.d/consul.hcl");
    expect(hcl).toMatch(/^server = true$/m);
    expect(hcl).toMatch(/^bootstrap_expect = 3$/m);
    expect(hcl).toMatch(/^autopilot \{\n {2}cleanup_dead_servers = true\n\}$/m);
    expect(hcl).toContain('client_addr = "127.0.0.1"'); // the UI is reachable only through SSM port forwarding
    expect(hcl).toContain('initial_management = "11111111-2222-3333-4444-555555555555"');
    expect((await consulValidate(join(sb.root, "etc/consul.d/consul.hcl"))).code).toBe(0);
    expect(res.calls.filter((c) => c.program === "dnf")).toEqual([]);
    expect(sha256Of(join(sb.root, "usr/local/bin/consul"))).toBe(world.consulSha);
    expect(res.calls.some((c) => c.program === "iptables" || c.program === "sysctl")).toBe(false);
    expect(sb.exists("/etc/routeleader")).toBe(false);
    expect(res.calls.filter((c) => c.program === "systemctl" && c.args[0] === "start").map(line)).toEqual(["systemctl start consul.service"]);
  });

  describe("ship: secure by default (ACLs deny, gossip encryption, TLS for RPC, HTTPS-only API)", () => {
    const GOSSIP = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    const MANAGEMENT = "0c8d5e2a-1f3b-4c6d-8e9f-a0b1c2d3e4f5";
    const NODE_TOKEN = "6e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
    let tls: TlsMaterial;
    beforeAll(() => {
      tls = makeTlsMaterial();
    });
    afterAll(() => rm(tls.dir, { recursive: true, force: true }));
    const secrets = (sb: BootstrapSandbox) => {
      sb.putSsmParameter("/rl/gossip", GOSSIP);
      sb.putSsmParameter("/rl/ca", readFileSync(tls.caFile, "utf8").trim());
      sb.putSsmParameter("/rl/ca-key", readFileSync(join(tls.dir, "consul-agent-ca-key.pem"), "utf8").trim());
      sb.putSsmParameter("/rl/management", MANAGEMENT);
    };
    const secureEnv = { RL_CONSUL_SECURITY: "secure", RL_GOSSIP_KEY_PARAM: "/rl/gossip", RL_CA_PARAM: "/rl/ca" };

    it("ship: without the gossip key or CA parameter a node refuses to start, naming what is missing, before touching anything", async () => {
      const { sb, env } = sandboxWithRelease();
      const before = sb.snapshot();
      for (const [override, message] of [
        [{ RL_CONSUL_SECURITY: undefined, RL_GOSSIP_KEY_PARAM: "" }, "secure mode: RL_GOSSIP_KEY_PARAM (the gossip key's SSM parameter) is required"],
        [{ RL_CA_PARAM: "" }, "secure mode: RL_CA_PARAM (the Consul CA certificate's SSM parameter) is required"],
      ] as [Record<string, string | undefined>, string][]) {
        const merged = Object.fromEntries(Object.entries({ ...env, ...secureEnv, ...override }).filter(([, v]) => v !== undefined)) as Record<string, string>;
        const res = await sb.run(SCRIPT, merged);
        expect(res.code).not.toBe(0);
        expect(res.output).toContain(message);
        expect(mutatingCalls(res.calls)).toEqual([]);
      }
      expect(sb.snapshot()).toEqual(before);
    });

    it("ship: a server keeps the management token and CA key to root, makes its own server certificate, and serves only HTTPS with ACLs deny by default", async () => {
      const sb = sandbox();
      secrets(sb);
      const releaseDir = sb.linkRelease(world.extracted, world.artifact.sha256);
      const res = await sb.run(SCRIPT, {
        ...secureEnv,
        RL_ROLE: "server",
        RL_CLUSTER: "prod-nat",
        RL_CONSUL_JOIN_TAG_KEY: "routeleader:consul-server",
        RL_CONSUL_JOIN_TAG_VALUE: "prod-nat",
        RL_CA_KEY_PARAM: "/rl/ca-key",
        RL_MANAGEMENT_TOKEN_PARAM: "/rl/management",
        RL_RELEASE_DIR: releaseDir,
        RL_CONSUL_URL: world.natEnv.RL_CONSUL_URL!,
        RL_CONSUL_SHA256: world.consulZipSha,
        RL_IMDS_ENDPOINT: world.aemm.endpoint,
      });
      expect(res.code, res.output).toBe(0);
      const hcl = sb.read("/etc/consul.d/consul.hcl");
      expect(hcl).toContain(`encrypt = "${GOSSIP}"`);
      expect(hcl).toMatch(/default_policy = "deny"/);
      expect(hcl).toContain(`initial_management = "${MANAGEMENT}"`);
      expect(hcl).toMatch(/ports \{\n {2}http = -1\n {2}https = 8501\n\}/);
      expect(hcl).toMatch(/internal_rpc \{\n {4}verify_incoming = true\n {4}verify_server_hostname = true\n {2}\}/);
      expect(sb.mode("/etc/consul.d/management-token")).toBe("600");
      expect(sb.mode("/etc/consul.d/tls/ca-key.pem")).toBe("600");
      // The server certificate is signed by the CA and names the server role and its address.
      const cert = execFileSync("openssl", ["x509", "-noout", "-text", "-in", join(sb.root, "etc/consul.d/tls/server.pem")], { encoding: "utf8" });
      expect(cert).toContain("DNS:server.dc1.consul");
      expect(cert).toContain(`IP Address:${IDENTITY.privateIp}`);
      execFileSync("openssl", ["verify", "-CAfile", tls.caFile, join(sb.root, "etc/consul.d/tls/server.pem")]);
      // Valid as long as a CA of `consul tls ca create` (5 years), not 1.
      expect(() => execFileSync("openssl", ["x509", "-noout", "-checkend", String(4 * 365 * 86400), "-in", join(sb.root, "etc/consul.d/tls/server.pem")], { stdio: "pipe" }), "valid for more than 4 years").not.toThrow();
      // consul validate with the paths as the sandbox holds them.
      const rebased = join(sb.dir, "consul-rebased.hcl");
      writeFileSync(rebased, hcl.replaceAll('"/etc/consul.d/', `"${sb.root}/etc/consul.d/`));
      const valid = await consulValidate(rebased);
      expect(valid.code, valid.out).toBe(0);
      // The credentials step for the NAT nodes runs from the verified release, every 10 s.
      expect(sb.read("/etc/systemd/system/routeleader-credentials.service")).toContain(`ExecStart=/bin/bash ${releaseDir}/node-credentials.sh`);
      expect(sb.read("/etc/systemd/system/routeleader-credentials.timer")).toContain("OnUnitActiveSec=10s");
      expect(sb.mode("/etc/routeleader/credentials.env")).toBe("600");
      expect(res.calls.filter((c) => c.program === "systemctl" && c.args[0] === "start").map(line)).toEqual(["systemctl start consul.service", "systemctl start routeleader-credentials.timer"]);
    });

    it("ship: a NAT node waits for its own token and certificate in SSM, never reads the management token or CA key, and talks HTTPS to its Consul agent", async () => {
      const { sb, env } = sandboxWithRelease();
      secrets(sb);
      const creds = `/routeleader/prod-nat/nodes/${IDENTITY.instanceId}`;
      const run = sb.run(SCRIPT, { ...env, ...secureEnv });
      // The servers' leader makes the credentials a moment later (written here in its place).
      await waitUntil("the node asking SSM for its token", async () => (existsSync(join(sb.state, "..", "calls.log")) && readFileSync(join(sb.dir, "calls.log"), "utf8").includes(`${creds}/token`) ? true : undefined), { timeoutMs: 60_000, intervalMs: 100 });
      sb.putSsmParameter(`${creds}/cert`, readFileSync(tls.clientCert, "utf8").trim());
      sb.putSsmParameter(`${creds}/key`, readFileSync(tls.clientKey, "utf8").trim());
      sb.putSsmParameter(`${creds}/token`, NODE_TOKEN);
      const res = await run;
      expect(res.code, res.output).toBe(0);
      const asked = res.calls.filter((c) => c.program === "aws" && c.args[1] === "get-parameter").map((c) => c.args[c.args.indexOf("--name") + 1]);
      expect(asked).not.toContain("/rl/management");
      expect(asked).not.toContain("/rl/ca-key");
      expect(sb.exists("/etc/consul.d/tls/ca-key.pem")).toBe(false);
      const hcl = sb.read("/etc/consul.d/consul.hcl");
      expect(hcl).toContain(`agent = "${NODE_TOKEN}"`);
      expect(hcl).not.toContain("initial_management");
      expect(hcl).toContain(`encrypt = "${GOSSIP}"`);
      expect(hcl).toContain('cert_file = "/etc/consul.d/tls/client.pem"');
      const rebased = join(sb.dir, "consul-rebased.hcl");
      writeFileSync(rebased, hcl.replaceAll('"/etc/consul.d/', `"${sb.root}/etc/consul.d/`));
      const valid = await consulValidate(rebased);
      expect(valid.code, valid.out).toBe(0);
      const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
      expect(cfg.consul).toEqual({ address: "https://127.0.0.1:8501", caFile: "/etc/consul.d/tls/ca.pem", tokenFile: "/etc/routeleader/consul-token" });
      expect(sb.read("/etc/routeleader/consul-token")).toBe(`${NODE_TOKEN}\n`);
      expect(sb.mode("/etc/routeleader/consul-token")).toBe("600");
    });

    it("ship: existing Consul, secure: the NAT node's agent API is HTTPS only on 127.0.0.1:8501 with a certificate of a loopback CA made at boot (its key gone), RPC by auto_encrypt against the CA parameter; a real agent joins a real server so and routeleader's client verifies it", async () => {
      const { sb, env } = sandboxWithRelease();
      secrets(sb);
      // The operator's routeleader token; here the server's management token, as this test is about transport.
      sb.putSsmParameter("/rl/acl-token", MANAGEMENT);
      const existing = { ...env, ...secureEnv, RL_ACL_TOKEN_PARAM: "/rl/acl-token" };
      const res = await sb.run(SCRIPT, existing);
      expect(res.code, res.output).toBe(0);
      const hcl = sb.read("/etc/consul.d/consul.hcl");
      expect(hcl).toMatch(/ports \{\n {2}http = -1\n {2}https = 8501\n\}/);
      expect(hcl).toMatch(/auto_encrypt \{\n {2}tls = true\n\}/);
      expect(hcl).toContain('cert_file = "/etc/consul.d/tls/loopback.pem"');
      const cfg = parseYaml(sb.read("/etc/routeleader/routeleader.yaml"));
      expect(cfg.consul).toEqual({ address: "https://127.0.0.1:8501", caFile: "/etc/consul.d/tls/loopback-ca.pem", tokenFile: "/etc/routeleader/consul-token" });
      expect((await releaseValidate(sb, join(sb.root, "etc/routeleader/routeleader.yaml"))).code).toBe(0);
      // The loopback certificate: for 127.0.0.1, signed by the node's own CA (not the cluster's), whose key is nowhere.
      const tlsDir = join(sb.root, "etc/consul.d/tls");
      execFileSync("openssl", ["verify", "-CAfile", join(tlsDir, "loopback-ca.pem"), join(tlsDir, "loopback.pem")]);
      expect(() => execFileSync("openssl", ["verify", "-CAfile", tls.caFile, join(tlsDir, "loopback.pem")], { stdio: "pipe" })).toThrow();
      expect(execFileSync("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", join(tlsDir, "loopback.pem")], { encoding: "utf8" })).toContain("IP Address:127.0.0.1");
      expect([...sb.snapshot().keys()].filter((k) => k.endsWith("key.pem"))).toEqual(["/etc/consul.d/tls/loopback-key.pem"]);
      expect(sb.mode("/etc/consul.d/tls/loopback-key.pem")).toBe("640");
      const rebased = join(sb.dir, "consul-rebased.hcl");
      writeFileSync(rebased, hcl.replaceAll('"/etc/consul.d/', `"${sb.root}/etc/consul.d/`));
      const valid = await consulValidate(rebased);
      expect(valid.code, valid.out).toBe(0);
      // A second run keeps the certificate (no Consul restart).
      const again = await sb.run(SCRIPT, existing);
      expect(again.code, again.output).toBe(0);
      expect(again.output).toContain("done: 0 file(s) written, restarted: none");

      // A real server (the CA parameter's, auto_encrypt.allow_tls) and the rendered client config
      // in a real agent; only addresses, ports and paths are moved onto this host.
      const [srvHttps, srvSerf, srvWan, srvRpc, cliHttps, cliSerf] = await freePorts(6);
      const dir = join(sb.dir, "real");
      mkdirSync(join(dir, "srv"), { recursive: true });
      mkdirSync(join(dir, "cli"), { recursive: true });
      writeFileSync(join(dir, "srv", "server.hcl"), [
        'node_name = "srv"', 'datacenter = "dc1"', `data_dir = "${dir}/srv-data"`, 'bind_addr = "127.0.0.1"', 'client_addr = "127.0.0.1"',
        "server = true", "bootstrap_expect = 1", `encrypt = "${GOSSIP}"`, "disable_update_check = true",
        `ports {\n  http = -1\n  https = ${srvHttps}\n  serf_lan = ${srvSerf}\n  serf_wan = ${srvWan}\n  server = ${srvRpc}\n  dns = -1\n  grpc = -1\n  grpc_tls = -1\n}`,
        `tls {\n  defaults {\n    ca_file = "${tls.caFile}"\n    cert_file = "${tls.serverCert}"\n    key_file = "${tls.serverKey}"\n    verify_outgoing = true\n  }\n  internal_rpc {\n    verify_incoming = true\n    verify_server_hostname = true\n  }\n  https {\n    verify_incoming = false\n  }\n}`,
        "auto_encrypt {\n  allow_tls = true\n}",
        `acl {\n  enabled = true\n  default_policy = "deny"\n  tokens {\n    initial_management = "${MANAGEMENT}"\n    agent = "${MANAGEMENT}"\n  }\n}`,
      ].join("\n"));
      writeFileSync(join(dir, "cli", "consul.hcl"), hcl
        .replaceAll('"/etc/consul.d/', `"${sb.root}/etc/consul.d/`)
        .replace('data_dir = "/opt/consul"', `data_dir = "${dir}/cli-data"`)
        .replaceAll(`"${IDENTITY.privateIp}"`, '"127.0.0.1"')
        .replace(/^retry_join = .*$/m, `retry_join = ["127.0.0.1:${srvSerf}"]`)
        // server: the port auto_encrypt's first request goes to on the retry_join host.
        .replace("ports {\n  http = -1\n  https = 8501\n}", `ports {\n  http = -1\n  https = ${cliHttps}\n  serf_lan = ${cliSerf}\n  serf_wan = -1\n  server = ${srvRpc}\n  dns = -1\n  grpc = -1\n  grpc_tls = -1\n}`));
      const consul = binaryPath("consul");
      const agents = [
        new ManagedProcess(consul, ["agent", `-config-dir=${join(dir, "srv")}`], { name: "consul server (existing)", env: { ...process.env, CHECKPOINT_DISABLE: "1" } }),
        new ManagedProcess(consul, ["agent", `-config-dir=${join(dir, "cli")}`], { name: "consul NAT client (existing)", env: { ...process.env, CHECKPOINT_DISABLE: "1" } }),
      ];
      try {
        const local = `https://127.0.0.1:${cliHttps}`;
        const api = new ConsulApi(new ConsulConnection({ address: local, token: MANAGEMENT, caFile: join(sb.root, cfg.consul.caFile) }));
        // A KV write goes from the client to the server over RPC: TLS with the auto_encrypt certificate.
        await waitUntil("a KV write through the NAT node's HTTPS API", async () => {
          for (const a of agents) if (a.hasExited) throw new Error(`${a.name} exited:\n${a.output(30)}`);
          return (await api.kvPut("routeleader/prod-nat/probe", "1").catch(() => false)) || undefined;
        }, { timeoutMs: 90_000, intervalMs: 500 });
        expect((await api.agentSelf()).nodeName).toBe(IDENTITY.instanceId);
        expect((await api.members()).filter((m) => m.status === 1).map((m) => m.name).sort()).toEqual([IDENTITY.instanceId, "srv"].sort());
        // The cluster CA does not verify the loopback listener: the loopback CA is what makes it verifiable.
        const withClusterCa = new ConsulApi(new ConsulConnection({ address: local, token: MANAGEMENT, caFile: tls.caFile }));
        await expect(withClusterCa.agentSelf()).rejects.toThrow(/not signed by the configured CA/);
      } finally {
        for (const a of agents.reverse()) await a.stop(10_000);
      }
    }, 180_000);
  });

  it("refuses to run without a cluster name, route tables, a release or a Consul checksum, before touching anything", async () => {
    const { sb, env } = sandboxWithRelease();
    const before = sb.snapshot();
    const cases: [Record<string, string>, string][] = [
      [{ RL_CLUSTER: "" }, "RL_CLUSTER is required"],
      [{ RL_ROUTE_TABLE_IDS: "" }, "set RL_ROUTE_TABLE_IDS or RL_ROUTE_TABLE_TAG_KEY"],
      [{ RL_RELEASE_DIR: "/opt/routeleader/releases/none/routeleader" }, "RL_RELEASE_DIR must name an extracted release"],
      [{ RL_CONSUL_SHA256: "" }, "RL_CONSUL_SHA256 must be 64 lowercase hex digits"],
      [{ RL_CONSUL_URL: "" }, "RL_CONSUL_URL is required"],
    ];
    for (const [override, message] of cases) {
      const res = await sb.run(SCRIPT, { ...env, ...override });
      expect(res.code, message).not.toBe(0);
      expect(res.output).toContain(message);
      expect(mutatingCalls(res.calls)).toEqual([]);
    }
    expect(sb.snapshot()).toEqual(before);
  });

  it("never falls back to IMDSv1: when the metadata mock refuses the token, the run stops before any change", async () => {
    // The real metadata mock with IMDSv1 allowed (no -I), behind a relay that refuses the
    // token PUT as a hop-limited or IMDSv2-broken instance would see it: a fallback to plain
    // GETs would succeed here, so only a script that never tries one stops.
    const v1 = await startAemm({ ...IDENTITY, instanceId: "i-0v1v1v1v1v1v1v1v1" }, { imdsv2Only: false });
    const relay = await startHttpRelay({ upstream: v1.endpoint, refuse: (r) => (r.method === "PUT" ? { status: 403, body: "token refused" } : undefined) });
    try {
      const { sb, env } = sandboxWithRelease();
      const before = sb.snapshot();
      const res = await sb.run(SCRIPT, { ...env, RL_IMDS_ENDPOINT: relay.endpoint });
      expect(res.code).not.toBe(0);
      expect(res.output).toMatch(/403/);
      expect(mutatingCalls(res.calls)).toEqual([]);
      expect(sb.snapshot()).toEqual(before);
      const seen = relay.requests();
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every((r) => r.method === "PUT" && r.path === "/latest/api/token"), JSON.stringify(seen)).toBe(true);
    } finally {
      await relay.stop();
      await v1.stop();
    }
  });
});

describe("ship: the launch template's user data (scripts/user-data.sh as CloudFormation renders it) in a sandbox", () => {
  // An instance in moto (EC2 identity, route table), its metadata mock, a Consul agent with a
  // leader: what a NAT node finds on its first boot. The test plays systemd for routeleader:
  // when the bootstrap starts routeleader.service, it starts the command line of that unit
  // from the installed release, under plain node.
  let ec2: EC2Client;
  let consul: StartedConsul;
  let aemm: StartedAemm;
  let identity: SimulatedIdentity;
  let table: string;
  const template = loadTemplate("routeleader-nat.yaml");

  beforeAll(async () => {
    ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: world.moto.endpoint, maxAttempts: 1 });
    const { vpcId } = await createVpc(ec2, "10.42.0.0/16");
    const subnet = await createSubnet(ec2, vpcId, "10.42.1.0/24", "us-east-1a");
    table = await createTable(ec2, vpcId);
    identity = identityOf(await runInstance(ec2, subnet, { "routeleader:cluster": "prod-nat" }));
    aemm = await startAemm(identity, { imdsv2Only: true });
    consul = await startConsulDev("ship-launch");
  });
  afterAll(async () => {
    await consul?.stop();
    await aemm?.stop();
    ec2?.destroy();
  });

  /** The user data of a launch template for these stack parameters, written to a file in the sandbox. */
  function userData(sb: BootstrapSandbox, logical: "NatLaunchTemplate" | "ConsulServerLaunchTemplate", overrides: Record<string, string> = {}): string {
    const params = {
      ClusterName: "prod-nat",
      VpcId: identity.vpcId,
      VpcCidr: "10.42.0.0/16",
      PublicSubnetA: identity.subnetId,
      PublicSubnetB: "subnet-0b0b0b0b0b0b0b0b0",
      PrivateRouteTableIds: table,
      CheckHost: "127.0.0.1",
      ArtifactBucket: BUCKET,
      ArtifactKey: `releases/${world.artifact.fileName}`,
      ArtifactSha256: world.artifact.sha256,
      ConsulBinaryUrl: `s3://${BUCKET}/mirror/consul.zip`,
      ConsulBinarySha256: world.consulZipSha,
      ConsulSecurity: "insecure",
      "AWS::StackName": "prod-nat",
      "AWS::Region": "us-east-1",
      "AWS::Partition": "aws",
      "AWS::AccountId": "123456789012",
      "AWS::URLSuffix": "amazonaws.com",
      // A Ref to the stack's log group is its name.
      AgentLogGroup: LOG_GROUP,
      ...overrides,
    };
    const ctx = evaluateConditions(template, params);
    const text = resolve(template.Resources[logical].Properties.LaunchTemplateData.UserData["Fn::Base64"], ctx) as string;
    const file = join(sb.dir, `user-data-${logical}`);
    writeFileSync(file, text, { mode: 0o755 });
    return file;
  }

  const signals = (res: RunResult) => res.calls.filter((c) => c.program === "aws" && c.args[0] === "cloudformation").map(line);
  const signal = (resource: string, status: string) =>
    `aws cloudformation signal-resource --region us-east-1 --stack-name prod-nat --logical-resource-id ${resource} --unique-id ${identity.instanceId} --status ${status}`;

  it("ship: a good artifact is verified, installed and run; the agent joins Consul and answers /healthz; only then SUCCESS is signalled; it then elects itself and writes the route", async () => {
    const sb = sandbox();
    sb.console(); // creates $ROOT/dev/console, where the verdict is written
    const port = await freePort();
    const file = userData(sb, "NatLaunchTemplate");
    const launch = sb.run(file, { RL_IMDS_ENDPOINT: aemm.endpoint, RL_CONSUL_HTTP_ADDR: consul.httpAddr, RL_AGENT_HTTP: `http://127.0.0.1:${port}`, RL_HEALTH_TIMEOUT: "180" });

    // systemd's part: start routeleader.service's ExecStart when the bootstrap starts the unit.
    let agent: ManagedProcess | undefined;
    try {
      await waitUntil("systemctl start routeleader.service", async () => (readFileSync(join(sb.state, "active"), "utf8").split("\n").includes("routeleader.service") ? true : undefined), { timeoutMs: 120_000, intervalMs: 200 });
      const unit = sb.read("/etc/systemd/system/routeleader.service");
      const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!.split(" ");
      expect(execStart.slice(0, 4)).toEqual(["/usr/bin/node-22", "--lite-mode", "--single-threaded-gc", "/opt/routeleader/current/dist/agent/cli.js"]);
      const current = readlinkSync(join(sb.root, "opt/routeleader/current"));
      expect(current).toBe(`/opt/routeleader/releases/${world.artifact.sha256}/routeleader`);
      // The config as written, pointed at this test's Consul agent and a free port.
      const config = parseYaml(sb.read(execStart[6]!));
      expect(config.consul.address).toBe("http://127.0.0.1:8500");
      config.consul.address = consul.httpAddr;
      config.http = { listen: `127.0.0.1:${port}` };
      // The one liberty taken: this host forwards no IPv4 (ip_forward = 0, and a test must not
      // change the machine), so the route relies on the egress check alone here; the nat check
      // itself is proven in network namespaces by the health-check suites.
      expect(config.routes[0].checks).toEqual(["egress", "forwarding"]);
      config.routes[0].checks = ["egress"];
      // EMF on, into the file the CloudWatch agent ships (moved into the sandbox: the host's /var/log is not the test's).
      expect(config.observe.cloudwatch).toEqual({ emf: true, namespace: "routeleader", output: "/var/log/routeleader/emf.log" });
      const emfFile = join(sb.dir, "emf.log");
      config.observe.cloudwatch.output = emfFile;
      const agentConfig = join(sb.dir, "agent.yaml");
      writeFileSync(agentConfig, toYaml(config));
      agent = new ManagedProcess(process.execPath, [...execStart.slice(1, 3), join(sb.root, current, "dist/agent/cli.js"), "run", "--config", agentConfig], {
        name: "routeleader (from the release)",
        cwd: sb.dir,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: sb.dir,
          AWS_ACCESS_KEY_ID: "testing",
          AWS_SECRET_ACCESS_KEY: "testing",
          AWS_REGION: "us-east-1",
          AWS_ENDPOINT_URL: world.moto.endpoint,
          AWS_EC2_METADATA_SERVICE_ENDPOINT: aemm.endpoint,
        },
        keepLines: 500,
      });
      const res = await launch;
      expect(res.code, `${res.output}\n--- agent ---\n${agent.output(50)}`).toBe(0);
      expect(signals(res)).toEqual([signal("NatGroupA", "SUCCESS")]);
      expect(sb.console()).toContain(`routeleader-launch: healthy: nat node ${identity.instanceId} is up`);
      // It really is the agent from the artifact, registered in Consul.
      const services = await consul.get<Record<string, unknown>>("/v1/agent/services");
      expect(Object.keys(services).some((id) => id.startsWith("routeleader"))).toBe(true);
      expect(agent.hasExited).toBe(false);
      // The agent from the artifact contends, wins and points the table at this instance.
      const route = await waitUntil("the route pointed at this instance", async () => {
        const r = await readRoute(ec2, table, "0.0.0.0/0");
        return r?.InstanceId === identity.instanceId ? r : undefined;
      }, { timeoutMs: 60_000, intervalMs: 500 }).catch((err: Error) => {
        throw new Error(`${err.message}\n--- agent ---\n${agent!.output(80)}`);
      });
      expect(route.InstanceId).toBe(identity.instanceId);
      // egress: the agent from the artifact wrote the route's EMF lines where the CloudWatch agent reads them.
      const emf = await waitUntil("the EMF line of the route write", async () => {
        const lines = existsSync(emfFile) ? readFileSync(emfFile, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
        return lines.some((l) => "RouteWrites" in l) ? lines : undefined;
      }, { timeoutMs: 30_000, intervalMs: 200 });
      const write = emf.find((l) => "RouteWrites" in l)!;
      expect(write).toMatchObject({ Cluster: "prod-nat", instanceId: identity.instanceId, RouteWrites: 1 });
      expect(write._aws.CloudWatchMetrics[0].Namespace).toBe("routeleader");
      // Memory of the compiled agent holding a route (sizes the default instance type).
      const rssKiB = Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${agent.pid}/status`, "utf8"))![1]);
      console.log(`[ship] routeleader from the release, holding 1 route: ${(rssKiB / 1024).toFixed(0)} MiB RSS`);
      expect(rssKiB / 1024).toBeLessThan(256);
      // The user data left no download behind and extracted the release once, where the unit runs it.
      expect(readdirSync(join(sb.root, "var/tmp"))).toEqual([]);
      expect(readdirSync(join(sb.root, "opt/routeleader/releases"))).toEqual([world.artifact.sha256]);
      // And shellcheck accepts the whole user data, header included.
      const sc = await run("shellcheck", ["-s", "bash", file]).then(
        () => ({ code: 0, out: "" }),
        (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
      );
      expect(sc.code, sc.out).toBe(0);
    } finally {
      await agent?.stop();
      await launch.catch(() => undefined);
    }
  });

  it("ship: a tampered artifact (sha256 differs) is refused: console line, FAILURE signal, nothing installed", async () => {
    const sb = sandbox();
    sb.console();
    const res = await sb.run(userData(sb, "NatLaunchTemplate", { ArtifactKey: "releases/tampered.tar.gz" }), { RL_IMDS_ENDPOINT: aemm.endpoint, RL_CONSUL_HTTP_ADDR: consul.httpAddr });
    expect(res.code).toBe(1);
    const reason = `sha256 mismatch for s3://${BUCKET}/releases/tampered.tar.gz: expected ${world.artifact.sha256}, got ${world.tamperedSha}; nothing installed`;
    expect(sb.console()).toBe(`routeleader-launch: FAILED on ${identity.instanceId}: ${reason}\n`);
    expect(signals(res)).toEqual([signal("NatGroupA", "FAILURE")]);
    expect(mutatingCalls(res.calls)).toEqual([]);
    expect(res.calls.filter((c) => c.program !== "aws").map((c) => c.program)).toEqual([]);
    // Nothing under ROOT but the console and an empty scratch folder.
    const files = [...sb.snapshot().keys()];
    expect(files).toEqual(["/dev/", "/dev/console", "/var/", "/var/tmp/"]);
  });

  it("ship: a Consul binary whose sha256 differs fails the bootstrap; the reason reaches the console and the FAILURE signal", async () => {
    const sb = sandbox();
    sb.console();
    const res = await sb.run(userData(sb, "NatLaunchTemplate", { ConsulBinarySha256: world.consulSha }), { RL_IMDS_ENDPOINT: aemm.endpoint, RL_CONSUL_HTTP_ADDR: consul.httpAddr });
    expect(res.code).toBe(1);
    expect(sb.console()).toBe(
      `routeleader-launch: FAILED on ${identity.instanceId}: bootstrap: sha256 mismatch for s3://${BUCKET}/mirror/consul.zip: expected ${world.consulSha}, got ${world.consulZipSha}; nothing installed (journalctl -t routeleader-bootstrap)\n`,
    );
    expect(signals(res)).toEqual([signal("NatGroupA", "FAILURE")]);
    expect(sb.exists("/usr/local/bin/consul")).toBe(false);
    expect(res.calls.some((c) => c.program === "systemctl" && c.args[0] === "start")).toBe(false);
  });

  it("ship: a node that never becomes healthy signals FAILURE with what is missing", async () => {
    const sb = sandbox();
    sb.console();
    const closed = `http://127.0.0.1:${await freePort()}`;
    const res = await sb.run(userData(sb, "NatLaunchTemplate"), { RL_IMDS_ENDPOINT: aemm.endpoint, RL_CONSUL_HTTP_ADDR: closed, RL_HEALTH_TIMEOUT: "3" });
    expect(res.code).toBe(1);
    expect(sb.console()).toBe(`routeleader-launch: FAILED on ${identity.instanceId}: not healthy after 3 s: the Consul agent has not joined a cluster with a leader\n`);
    expect(signals(res)).toEqual([signal("NatGroupA", "FAILURE")]);
  });

  it("ship: an instance in a subnet that is none of the stack's signals nothing it cannot attribute, and says so", async () => {
    const sb = sandbox();
    sb.console();
    const res = await sb.run(userData(sb, "NatLaunchTemplate", { PublicSubnetA: "subnet-0aaaaaaaaaaaaaaaa" }), { RL_IMDS_ENDPOINT: aemm.endpoint });
    expect(res.code).toBe(1);
    expect(sb.console()).toContain(`subnet ${identity.subnetId} is none of the stack's NAT subnets`);
    expect(signals(res)).toEqual([]);
  });

  it("ship: a Consul server signals ConsulServerGroup once its agent sees a leader", async () => {
    const sb = sandbox();
    sb.console();
    const res = await sb.run(userData(sb, "ConsulServerLaunchTemplate"), { RL_IMDS_ENDPOINT: aemm.endpoint, RL_CONSUL_HTTP_ADDR: consul.httpAddr, RL_HEALTH_TIMEOUT: "30" });
    expect(res.code, res.output).toBe(0);
    expect(signals(res)).toEqual([signal("ConsulServerGroup", "SUCCESS")]);
    expect(sb.read("/etc/consul.d/consul.hcl")).toMatch(/^server = true$/m);
    expect(sb.exists("/etc/routeleader")).toBe(false);
  });
});

describe("the NAT data plane it configures, for real in network namespaces", () => {
  // private host (10.42.128.10) -> NAT node (10.42.128.1 | 198.51.100.1) -> internet host (198.51.100.2).
  // The internet host has no route back to 10.42.0.0/16: a reply reaches the private host only
  // if the NAT node masquerades. The sysctl file and the iptables rule are exactly the ones the
  // bootstrap wrote and recorded.
  const id = `rl${process.pid % 100000}`;
  const ns = { host: `${id}h`, nat: `${id}n`, net: `${id}i` };
  let masquerade: string[];
  let sysctlFile: string;
  let server: ManagedProcess | undefined;
  const sh = (args: string[]) => run("ip", args);
  const inNs = (name: string, args: string[]) => run("ip", ["netns", "exec", name, ...args]);

  beforeAll(async () => {
    const { sb, env } = sandboxWithRelease();
    const res = await sb.run(SCRIPT, env);
    sysctlFile = join(sb.root, "etc/sysctl.d/90-routeleader-nat.conf");
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
    await inNs(ns.nat, ["sysctl", "-q", "-p", sysctlFile]);
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

  it.each(scripts)("ship: shellcheck: scripts/%s is clean", async (name) => {
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
