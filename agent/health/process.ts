import { spawn } from "node:child_process";

export interface ProcessResult {
  /** Exit code, or null when killed by a signal or never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Killed because it outlived `timeoutMs`. */
  timedOut: boolean;
  /** Killed because the caller's signal aborted. */
  aborted: boolean;
  /** Set when the program could not be started (ENOENT, EACCES). */
  spawnError?: string;
  durationMs: number;
}

export type ProcessRunner = (argv: readonly string[], options: { timeoutMs: number; signal?: AbortSignal }) => Promise<ProcessResult>;

const MAX_OUTPUT_BYTES = 64 * 1024;

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // the group is already gone
  }
}

/**
 * Runs a program from an argv (no shell) in its own process group. On timeout or abort the
 * whole group gets SIGKILL, so a check's children (a `sh -c` pipeline, a hung `curl`) die
 * with it; when the program exits, anything it left running in its group is killed too.
 */
export const runProcess: ProcessRunner = (argv, options) =>
  new Promise((resolve) => {
    const started = performance.now();
    const [program, ...args] = argv;
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let outBytes = 0;
    let timedOut = false;
    let aborted = false;
    let spawnError: string | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } = { code: null, signal: null };
    let settled = false;

    const child = spawn(program as string, args, { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      if (outBytes >= MAX_OUTPUT_BYTES) return;
      outBytes += chunk.length;
      into.push(chunk);
    };
    child.stdout.on("data", collect(stdout));
    child.stderr.on("data", collect(stderr));

    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve({
        ...exit,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
        timedOut,
        aborted,
        ...(spawnError ? { spawnError } : {}),
        durationMs: performance.now() - started,
      });
    };
    const onAbort = () => {
      aborted = true;
      killGroup(child.pid);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, options.timeoutMs);
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener("abort", onAbort, { once: true });

    child.once("error", (err: NodeJS.ErrnoException) => {
      spawnError = err.code ?? err.message;
      finish();
    });
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      killGroup(child.pid);
    });
    child.once("close", finish);
  });
