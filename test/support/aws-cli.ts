import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { binaryPath } from "./binaries.js";
import { ManagedProcess } from "./process.js";

/**
 * The `aws` CLI that bootstrap sandboxes call, answered against a moto server by one
 * long-lived process (aws-cli-server.py, moto's Python with boto3) on a Unix socket. The
 * sandbox's stub is a thin client, so a call costs milliseconds instead of a boto3 start-up; a
 * socket on the file system is reachable from every network namespace.
 */
export class AwsCli {
  private constructor(
    readonly socket: string,
    private readonly dir: string,
    private readonly process: ManagedProcess,
  ) {}

  static async start(motoEndpoint: string): Promise<AwsCli> {
    const dir = mkdtempSync(join(tmpdir(), "rl-aws-cli-"));
    const socket = join(dir, "aws.sock");
    const python = join(dirname(binaryPath("moto")), "python");
    const proc = new ManagedProcess(python, [join(import.meta.dirname, "aws-cli-server.py"), socket, motoEndpoint], { name: "aws cli stub" });
    try {
      await proc.waitForLine(/^listening /, 60_000);
    } catch (err) {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return new AwsCli(socket, dir, proc);
  }

  /** One call, as the sandbox's stub makes it: `aws ARGV...` → exit code, stdout, stderr. */
  call(argv: string[], cwd = tmpdir()): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const c = net.connect(this.socket);
      let reply = "";
      c.on("data", (b: Buffer) => (reply += b.toString()));
      c.on("end", () => {
        try {
          resolve(JSON.parse(reply) as { code: number; stdout: string; stderr: string });
        } catch (err) {
          reject(err as Error);
        }
      });
      c.on("error", reject);
      c.end(`${JSON.stringify({ argv, cwd })}\n`);
    });
  }

  /** Like call(), but fails on a non-zero exit; returns stdout. */
  async ok(...argv: string[]): Promise<string> {
    const r = await this.call(argv);
    if (r.code !== 0) throw new Error(`aws ${argv.slice(0, 2).join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  async stop(): Promise<void> {
    await this.process.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
