import { StringDecoder } from "node:string_decoder";
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { once } from "node:events";

/** Every process a fixture started and has not stopped yet, so a crash still cleans up. */
const live = new Set<ManagedProcess>();

function killAllSync(): void {
  for (const p of live) {
    if (p.pid !== undefined) {
      try {
        process.kill(p.group ? -p.pid : p.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  live.clear();
}

process.once("exit", killAllSync);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAllSync();
    process.exit(130);
  });
}

export interface StartOptions extends Pick<SpawnOptions, "cwd" | "env"> {
  /** A name for messages: "consul n1", "moto". */
  name: string;
  /** Keep this many output lines for error messages. */
  keepLines?: number;
  /**
   * Start the process as the leader of a process group of its own, so that signal(), stop()
   * and killGroup() reach everything it started (a script's children), not just its own pid.
   */
  group?: boolean;
}

/**
 * A child process owned by a test fixture: output kept in a ring buffer, stopped by its own
 * pid (SIGTERM, then SIGKILL after a grace period), stop() idempotent.
 */
export class ManagedProcess {
  readonly child: ChildProcess;
  readonly name: string;
  readonly group: boolean;
  private readonly lines: string[] = [];
  private readonly keep: number;
  private stopping: Promise<void> | undefined;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<void>;
  private readonly listeners = new Set<(line: string) => void>();

  constructor(command: string, args: readonly string[], options: StartOptions) {
    this.name = options.name;
    this.keep = options.keepLines ?? 200;
    this.group = options.group ?? false;
    this.child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"], detached: this.group });
    live.add(this);
    const emit = (line: string) => {
      if (!line) return;
      this.lines.push(line);
      if (this.lines.length > this.keep) this.lines.shift();
      for (const l of this.listeners) l(line);
    };
    // A pipe chunk can end mid-line (or mid-character): the rest waits for the next chunk, or
    // for the stream's end. Split lines were lost events, and tests that waited for them timed out.
    const lineReader = () => {
      const decoder = new StringDecoder("utf8");
      let rest = "";
      return {
        data: (buf: Buffer) => {
          const parts = (rest + decoder.write(buf)).split("\n");
          rest = parts.pop() ?? "";
          for (const line of parts) emit(line);
        },
        end: () => {
          emit(rest + decoder.end());
          rest = "";
        },
      };
    };
    for (const stream of [this.child.stdout, this.child.stderr]) {
      if (!stream) continue;
      const reader = lineReader();
      stream.on("data", reader.data);
      stream.once("end", reader.end);
    }
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        resolve();
      });
      this.child.once("error", (err) => {
        this.lines.push(`spawn error: ${err.message}`);
        this.exitInfo = { code: -1, signal: null };
        live.delete(this);
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  get exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  output(lastN = 40): string {
    return this.lines.slice(-lastN).join("\n");
  }

  /** Calls back on every output line from now on; returns an unsubscribe function. */
  onLine(listener: (line: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first output line (already seen or future) matching the pattern. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string> {
    const seen = this.lines.find((l) => pattern.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`${this.name}: no output line matching ${pattern} within ${timeoutMs} ms; last lines:\n${this.output(20)}`));
      }, timeoutMs);
      const off = this.onLine((line) => {
        if (pattern.test(line)) {
          clearTimeout(timer);
          off();
          resolve(line);
        }
      });
    });
  }

  /** Resolves when the process exits (with its code and signal). */
  async waitForExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} (pid ${this.pid}) did not exit within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.exitInfo as { code: number | null; signal: NodeJS.Signals | null };
  }

  signal(sig: NodeJS.Signals): void {
    if (this.pid !== undefined && !this.hasExited) process.kill(this.group ? -this.pid : this.pid, sig);
  }

  /**
   * SIGKILL to every process still in the group (with `group`), whether or not the leader
   * has exited: what a failed or interrupted test leaves behind. Returns how the kill went.
   */
  killGroup(): "killed" | "none left" {
    if (!this.group || this.pid === undefined) throw new Error(`${this.name}: killGroup needs a process started with { group: true }`);
    try {
      process.kill(-this.pid, "SIGKILL");
      return "killed";
    } catch {
      return "none left";
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Idempotent. */
  stop(graceMs = 5000): Promise<void> {
    this.stopping ??= (async () => {
      if (this.hasExited || this.pid === undefined) return;
      this.signal("SIGCONT");
      this.signal("SIGTERM");
      const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
      await this.exited;
      clearTimeout(timer);
    })();
    return this.stopping;
  }

  /** SIGKILL at once (a crash, not a stop). */
  async kill(): Promise<void> {
    this.signal("SIGKILL");
    await this.exited;
  }
}

/** Polls `probe` until it returns a value other than undefined, or throws naming `what`. */
export async function waitUntil<T>(what: string, probe: () => Promise<T | undefined>, options: { timeoutMs: number; intervalMs?: number }): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError ? ` (last error: ${(lastError as Error).message})` : "";
      throw new Error(`${what}: not ready after ${options.timeoutMs} ms${why}`);
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}

export { once };
