import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ManagedProcess } from "../support/process.js";

/**
 * `npm run demo`, as a new user runs it but non-interactively (`--once`, no pauses): it
 * must tell a failover with its measured time and a handover, exit 0, and leave none of the
 * processes it started (Consul, moto, metadata mocks, agents) behind.
 */

const REPO = join(import.meta.dirname, "..", "..");

interface ProcInfo {
  pid: number;
  ppid: number;
  /** Start time in clock ticks since boot: tells a pid from a later reuse of it. */
  start: string;
  cmd: string;
}

function readProc(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z") return undefined;
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    return { pid, ppid: Number(fields[1]), start: fields[19] as string, cmd };
  } catch {
    return undefined;
  }
}

/** Every live descendant of `root`, from /proc. */
function descendants(root: number): ProcInfo[] {
  const all = readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map((d) => readProc(Number(d)))
    .filter((p): p is ProcInfo => p !== undefined);
  const out: ProcInfo[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        out.push(p);
        grew = true;
      }
    }
  }
  return out;
}

let demo: ManagedProcess | undefined;

// The demo runs as a process group of its own: whatever happens to the test (a failed
// expectation, a timeout), everything the demo started is stopped, not just its shell.
afterAll(async () => {
  if (!demo) return;
  await demo.stop(30_000);
  demo.killGroup();
});

describe("npm run demo", () => {
  it("shows a measured failover and a handover, exits 0 and leaves no process behind", async () => {
    demo = new ManagedProcess("bash", [join(REPO, "scripts", "demo.sh"), "--once", "--pace", "0"], { name: "demo", cwd: REPO, env: { ...process.env }, keepLines: 5000, group: true });
    const seen = new Map<number, ProcInfo>();
    const sample = () => {
      for (const p of descendants(demo!.pid as number)) if (!seen.has(p.pid)) seen.set(p.pid, p);
    };
    const sampler = setInterval(sample, 200);
    let exit;
    try {
      exit = await demo.waitForExit(280_000);
    } finally {
      clearInterval(sampler);
    }
    const output = demo.output(5000);

    expect(exit.code, output).toBe(0);
    expect(output).toMatch(/Consul UI: http:\/\/127\.0\.0\.1:\d+\/ui\//);
    const failover = /failover: r1 (\S+) → (\S+) in (\d+) ms \(fault → new holder's acquire\); route table pointed at \S+ (\d+) ms after the fault/.exec(output);
    expect(failover, output).not.toBeNull();
    expect(failover![1]).not.toBe(failover![2]);
    expect(output).toMatch(/handover: r1: i-[0-9a-f]+ → i-[0-9a-f]+ in \d+ ms/);
    expect(output).toContain("stopped everything the demo started");

    // The sampler saw the cluster the demo started…
    const commands = [...seen.values()].map((p) => p.cmd);
    for (const what of [/consul agent/, /moto_server/, /ec2-metadata-mock/, /agent\/cli\.ts run/]) expect(commands.some((c) => what.test(c)), `saw a ${what} process`).toBe(true);
    // …and none of those processes is alive now (same pid and start time).
    const alive = [...seen.values()].filter((p) => readProc(p.pid)?.start === p.start);
    expect(alive.map((p) => `${p.pid} ${p.cmd}`)).toEqual([]);
  }, 300_000);
});
