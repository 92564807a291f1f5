import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { systemClock } from "../../agent/clock.js";
import { createHookRunner, type HookRunner } from "../../agent/hooks/index.js";
import { captureLogger } from "../support/log-capture.js";
import { waitUntil } from "../support/process.js";

const routes = [{ name: "default-v4", destination: "0.0.0.0/0" }];

/** True when no such process exists, or only its zombie (nobody may reap it in a container). */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") ?? true;
  } catch {
    return true;
  }
}

function envFile(path: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(path, "utf8")
      .split("\n")
      .filter((l) => l.startsWith("ROUTELEADER_"))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

describe("transition hooks (real child processes)", () => {
  let dir: string;
  let runner: HookRunner | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "rl-hooks-"));
  });
  afterEach(async () => {
    await runner?.drain(1000);
    runner = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs onAcquire with the route, role, reason, previous holder, event and destination in its environment", async () => {
    const out = join(dir, "acquire.env");
    const { logger, lines } = captureLogger();
    runner = createHookRunner({
      hooks: { onAcquire: ["sh", "-c", 'env > "$0"', out], timeout: 10_000 },
      routes,
      instanceId: "i-0self",
      logger,
      clock: systemClock,
      baseEnv: { PATH: process.env.PATH },
    });
    runner.listener({ type: "acquired", route: "default-v4", lockIndex: 4, previousHolder: "i-0other", waitedMs: 1200, at: 0 });
    await runner.drain();
    expect(envFile(out)).toEqual({
      ROUTELEADER_ROUTE: "default-v4",
      ROUTELEADER_ROLE: "leader",
      ROUTELEADER_REASON: "acquired",
      ROUTELEADER_PREVIOUS_HOLDER: "i-0other",
      ROUTELEADER_EVENT: "acquired",
      ROUTELEADER_DESTINATION: "0.0.0.0/0",
    });
    expect(lines).toContainEqual(expect.objectContaining({ msg: "hook finished", hook: "onAcquire", route: "default-v4", exitCode: 0, killed: false }));
  });

  it("runs onRelease after a loss with role follower, the loss reason and this node as previous holder", async () => {
    const out = join(dir, "lost.env");
    const { logger } = captureLogger();
    runner = createHookRunner({ hooks: { onRelease: ["sh", "-c", 'env > "$0"', out], timeout: 10_000 }, routes, instanceId: "i-0self", logger, clock: systemClock });
    runner.listener({ type: "lost", route: "default-v4", reason: "sessionInvalidated", newHolder: "i-0next", at: 0 });
    await runner.drain();
    expect(envFile(out)).toMatchObject({
      ROUTELEADER_ROLE: "follower",
      ROUTELEADER_REASON: "sessionInvalidated",
      ROUTELEADER_PREVIOUS_HOLDER: "i-0self",
      ROUTELEADER_NEW_HOLDER: "i-0next",
      ROUTELEADER_EVENT: "lost",
    });
  });

  it("returns from the listener before the hook has done its work: a release is never delayed by its hook", async () => {
    const gate = join(dir, "gate");
    const marker = join(dir, "marker");
    const { logger } = captureLogger();
    // The hook cannot write its marker before the test opens the gate.
    const script = 'while [ ! -e "$0" ]; do sleep 0.05; done; echo "$ROUTELEADER_EVENT" > "$1"';
    runner = createHookRunner({ hooks: { onRelease: ["sh", "-c", script, gate, marker], timeout: 30_000 }, routes, instanceId: "i-0self", logger, clock: systemClock });

    runner.listener({ type: "released", route: "default-v4", reason: "checkFailed", heldMs: 5000, at: 0 });

    expect(runner.running).toBe(1);
    expect(existsSync(marker)).toBe(false);
    writeFileSync(gate, "");
    await waitUntil("the hook's marker file", async () => (existsSync(marker) ? readFileSync(marker, "utf8").trim() || undefined : undefined), { timeoutMs: 10_000 });
    expect(readFileSync(marker, "utf8").trim()).toBe("released");
  });

  it("kills a hook that hangs, with its whole process group, at the timeout and logs it", async () => {
    const pids = join(dir, "pids");
    const { logger, lines } = captureLogger();
    // sh forks a grandchild and waits on it: both must die.
    const script = 'sleep 300 & echo "$$ $!" > "$0"; wait';
    runner = createHookRunner({ hooks: { onAcquire: ["sh", "-c", script, pids], timeout: 300 }, routes, instanceId: "i-0self", logger, clock: systemClock });
    runner.listener({ type: "acquired", route: "default-v4", lockIndex: 1, waitedMs: 0, at: 0 });

    const [shell, grandchild] = await waitUntil(
      "the hook's pid file",
      async () => {
        const text = existsSync(pids) ? readFileSync(pids, "utf8").trim() : "";
        return /^\d+ \d+$/.test(text) ? text.split(" ").map(Number) : undefined;
      },
      { timeoutMs: 10_000 },
    );
    await waitUntil("the hook's log line", async () => lines.find((l) => l.hook === "onAcquire"), { timeoutMs: 10_000 });

    expect(lines).toContainEqual(expect.objectContaining({ msg: "hook killed after 300 ms", killed: true, signal: "SIGKILL", route: "default-v4" }));
    await waitUntil("hook processes gone", async () => (processGone(shell!) && processGone(grandchild!) ? true : undefined), { timeoutMs: 5000 });
    expect(runner.running).toBe(0);
  });

  it("drain() kills hooks still running when its bound ends", async () => {
    const { logger, lines } = captureLogger();
    runner = createHookRunner({ hooks: { onAcquire: ["sleep", "300"], timeout: 600_000 }, routes, instanceId: "i-0self", logger, clock: systemClock });
    runner.listener({ type: "acquired", route: "default-v4", lockIndex: 1, waitedMs: 0, at: 0 });
    await runner.drain(200);
    expect(runner.running).toBe(0);
    expect(lines).toContainEqual(expect.objectContaining({ killed: true, hook: "onAcquire" }));
  });

  it("logs a hook that cannot start, and does not run anything for events no hook follows", async () => {
    const { logger, lines } = captureLogger();
    runner = createHookRunner({ hooks: { onAcquire: [join(dir, "missing-program")], timeout: 5000 }, routes, instanceId: "i-0self", logger, clock: systemClock });
    runner.listener({ type: "leaderChanged", route: "default-v4", at: 0 });
    expect(runner.running).toBe(0);
    runner.listener({ type: "acquired", route: "default-v4", lockIndex: 1, waitedMs: 0, at: 0 });
    await runner.drain();
    expect(lines).toContainEqual(expect.objectContaining({ msg: "hook could not start", hook: "onAcquire", level: 40 }));
  });
});
