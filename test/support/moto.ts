import { request } from "node:http";
import { binaryPath } from "./binaries.js";
import { freePort } from "./ports.js";
import { ManagedProcess, waitUntil } from "./process.js";

/** Credentials and region every emulator client uses; moto checks no signature. */
export const EMULATOR_AWS = { region: "us-east-1", credentials: { accessKeyId: "testing", secretAccessKey: "testing" } } as const;

function post(url: string, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "POST", timeout: timeoutMs }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error(`POST ${url}: timeout`)));
    req.on("error", reject);
    req.end();
  });
}

/** A running moto server (EC2, Auto Scaling, CloudFormation) on loopback. */
export class StartedMoto {
  constructor(
    readonly endpoint: string,
    readonly process: ManagedProcess,
  ) {}

  /** Wipes all emulator state (POST /moto-api/reset). */
  async reset(): Promise<void> {
    const status = await post(`${this.endpoint}/moto-api/reset`);
    if (status !== 200) throw new Error(`moto reset answered HTTP ${status}`);
  }

  async stop(): Promise<void> {
    await this.process.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

export async function startMoto(): Promise<StartedMoto> {
  const bin = binaryPath("moto");
  const port = await freePort();
  const proc = new ManagedProcess(bin, ["-H", "127.0.0.1", "-p", String(port)], { name: "moto" });
  const endpoint = `http://127.0.0.1:${port}`;
  const moto = new StartedMoto(endpoint, proc);
  try {
    await waitUntil(
      `moto at ${endpoint}`,
      async () => {
        if (proc.hasExited) throw new Error(`exited early:\n${proc.output(20)}`);
        return (await post(`${endpoint}/moto-api/reset`, 1000)) === 200 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return moto;
}
