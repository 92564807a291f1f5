import { spawn } from "node:child_process";

/** How a bounded child process ended. */
export interface BoundedResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** True when it was still running at the deadline (or at an early kill) and was SIGKILLed. */
  killed: boolean;
  /** Set when the command could not be started (ENOENT, EACCES...). */
  spawnError?: string;
  /** The last bytes of stderr, for the log line of a failing hook. */
  stderrTail: string;
}

export interface BoundedChild {
  readonly pid: number | undefined;
  readonly done: Promise<BoundedResult>;
  /** SIGKILLs the whole process group now (idempotent). */
  kill(): void;
}

const STDERR_TAIL_BYTES = 512;

/**
 * Starts `argv` (no shell) in its own process group and SIGKILLs the whole group at
 * `timeoutMs`, so a hook that forked helpers cannot outlive its bound. Never throws: a
 * command that cannot start resolves `done` with `spawnError`.
 */
export function spawnBounded(argv: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): BoundedChild {
  const [command, ...args] = argv;
  const child = spawn(command as string, args, { env, detached: true, stdio: ["ignore", "ignore", "pipe"] });
  let killed = false;
  let stderrTail = "";
  let spawnError: string | undefined;
  child.stderr?.on("data", (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString("utf8")).slice(-STDERR_TAIL_BYTES);
  });
  const kill = () => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    killed = true;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // the group is already gone
    }
  };
  const timer = setTimeout(kill, timeoutMs);
  const done = new Promise<BoundedResult>((resolve) => {
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      // A grandchild holding stderr open must not keep this process waiting.
      child.stderr?.destroy();
      resolve({ exitCode, signal, killed, stderrTail: stderrTail.trim(), ...(spawnError ? { spawnError } : {}) });
    };
    child.once("error", (err) => {
      spawnError = err.message;
      if (child.pid === undefined) finish(null, null);
    });
    child.once("exit", finish);
  });
  return { pid: child.pid, done, kill };
}
