import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "node:http";
import { binaryPath } from "./binaries.js";
import { freePort } from "./ports.js";
import { ManagedProcess, waitUntil } from "./process.js";

/** The identity one simulated instance presents through its own metadata mock. */
export interface SimulatedIdentity {
  instanceId: string;
  az: string;
  region: string;
  vpcId: string;
  subnetId: string;
  eniId: string;
  mac: string;
  privateIp: string;
  accountId?: string;
}

export interface AemmOptions {
  /** Require IMDSv2 tokens (-I). Default true: the agent must work with tokens only. */
  imdsv2Only?: boolean;
  /** Seconds after start when autoscaling/target-lifecycle-state turns Terminated. Default: a day. */
  asgTerminationDelaySec?: number;
  /** Seconds after start when a spot interruption notice appears. Default: a day. */
  spotNoticeDelaySec?: number;
  /** Bind address; 127.0.0.1 unless inside a namespace. */
  host?: string;
  /** Listen on this port (a restart keeps the agent's configured endpoint valid); default: a free one. */
  port?: number;
  wrap?: string[];
}

const A_DAY = 86_400;

/** A running amazon-ec2-metadata-mock serving one instance's identity. */
export class StartedAemm {
  constructor(
    readonly endpoint: string,
    readonly identity: SimulatedIdentity,
    readonly process: ManagedProcess,
    private readonly dir: string,
  ) {}

  async stop(): Promise<void> {
    await this.process.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** AEMM's config-file shape: static values, plus the identity document, which is separate. */
export function aemmConfig(id: SimulatedIdentity): object {
  return {
    metadata: {
      values: {
        "instance-id": id.instanceId,
        "placement-availability-zone": id.az,
        "placement-region": id.region,
        mac: id.mac,
        "mac-mac": id.mac,
        "mac-vpc-id": id.vpcId,
        "mac-subnet-id": id.subnetId,
        "mac-network-interface-id": id.eniId,
        "local-ipv4": id.privateIp,
        "mac-local-ipv4s": id.privateIp,
      },
    },
    dynamic: {
      values: {
        "instance-identity-document": {
          accountId: id.accountId ?? "123456789012",
          availabilityZone: id.az,
          instanceId: id.instanceId,
          privateIp: id.privateIp,
          region: id.region,
          version: "2017-09-30",
          architecture: "x86_64",
          instanceType: "t4g.nano",
          imageId: "ami-0123456789abcdef0",
          pendingTime: "2026-11-21T00:00:00Z",
        },
      },
    },
  };
}

function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", headers, timeout: 1000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

export async function startAemm(identity: SimulatedIdentity, options: AemmOptions = {}): Promise<StartedAemm> {
  const bin = binaryPath("aemm");
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? (await freePort(host === "127.0.0.1" ? host : "127.0.0.1"));
  const dir = mkdtempSync(join(tmpdir(), `rl-aemm-${identity.instanceId}-`));
  const configFile = join(dir, "aemm-config.json");
  writeFileSync(configFile, JSON.stringify(aemmConfig(identity)));
  const args = [
    "-n", host, "-p", String(port), "-c", configFile,
    "--asg-termination-delay-sec", String(options.asgTerminationDelaySec ?? A_DAY),
    "-d", String(options.spotNoticeDelaySec ?? A_DAY),
    "--rebalance-delay-sec", String(A_DAY),
    ...(options.imdsv2Only ?? true ? ["-I"] : []),
  ];
  const [command, ...prefix] = options.wrap?.length ? [...options.wrap, bin] : [bin];
  // AEMM writes into $HOME with -s only; a private HOME keeps it from reading ~/aemm-config.json.
  const proc = new ManagedProcess(command as string, [...prefix, ...args], { name: `aemm ${identity.instanceId}`, env: { ...process.env, HOME: dir } });
  const endpoint = `http://${host}:${port}`;
  const started = new StartedAemm(endpoint, identity, proc, dir);
  try {
    await waitUntil(
      `metadata mock at ${endpoint}`,
      async () => {
        if (proc.hasExited) throw new Error(`exited early:\n${proc.output(20)}`);
        const status = await get(`${endpoint}/latest/meta-data/instance-id`);
        return status === 200 || status === 401 ? true : undefined;
      },
      { timeoutMs: 20_000 },
    );
  } catch (err) {
    await started.stop();
    throw err;
  }
  return started;
}
