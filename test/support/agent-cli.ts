import { join } from "node:path";
import { EMULATOR_AWS } from "./moto.js";
import { ManagedProcess } from "./process.js";

const REPO = join(import.meta.dirname, "..", "..");

export interface CliOptions {
  /** Extra environment on top of the emulator credentials (CONSUL_* and the like). */
  env?: Record<string, string>;
  name?: string;
  /** Run as this uid/gid (setpriv), to prove the agent needs no root. */
  asUser?: { uid: number; gid: number };
}

/**
 * The real CLI as a separate process: `node --import tsx agent/cli.ts ...args`. The
 * environment carries only what an instance would have (no CONSUL_* or IMDS variables
 * from the test runner leak in).
 */
export function spawnCli(args: readonly string[], options: CliOptions = {}): ManagedProcess {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    CI: "true",
    AWS_ACCESS_KEY_ID: EMULATOR_AWS.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: EMULATOR_AWS.credentials.secretAccessKey,
    AWS_REGION: EMULATOR_AWS.region,
    ...options.env,
  };
  const node = [process.execPath, "--import", "tsx", join(REPO, "agent", "cli.ts"), ...args];
  const [command, ...rest] = options.asUser ? ["setpriv", `--reuid=${options.asUser.uid}`, `--regid=${options.asUser.gid}`, "--clear-groups", ...node] : node;
  return new ManagedProcess(command as string, rest, { name: options.name ?? `routeleader ${args[0] ?? ""}`, cwd: REPO, env, keepLines: 2000 });
}

export interface CliResult {
  code: number | null;
  output: string;
}

/** Runs the CLI to its end (bounded) and returns its exit code and whole output. */
export async function runCli(args: readonly string[], options: CliOptions & { timeoutMs?: number } = {}): Promise<CliResult> {
  const proc = spawnCli(args, options);
  try {
    const exit = await proc.waitForExit(options.timeoutMs ?? 60_000);
    return { code: exit.code, output: proc.output(2000) };
  } finally {
    await proc.stop();
  }
}
