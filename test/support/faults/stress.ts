import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nsPids, nsRun, nsWrap } from "../netns.js";
import { ManagedProcess } from "../process.js";

/**
 * Conditions for a steady cluster that must NOT fail over (issue #16, false failovers):
 * - network delay, jitter and loss on a host namespace's eth0: every packet the host sends (to its
 *   peers, to the Consul servers, to the EC2 endpoint) is delayed and some are lost. tc netem where
 *   the kernel has it; where it does not (this lab's kernel is built without sch_netem), the same
 *   law through NFQUEUE and ./netdelay.py, which holds each packet's verdict for its delay;
 * - CPU starvation of a host: its processes share a cgroup whose CPU quota is cut to a few % of
 *   one core (an instance out of CPU credits, throttled to its baseline), with a busy loop in the
 *   same cgroup (a runaway process on that instance) taking its share of that quota.
 */

export interface NetemSpec {
  delayMs: number;
  jitterMs: number;
  lossPercent: number;
}

export function netemArgs(spec: NetemSpec): string[] {
  return ["delay", `${spec.delayMs}ms`, `${spec.jitterMs}ms`, "loss", `${spec.lossPercent}%`];
}

const QUEUE = "1";

/** Delay, jitter and loss on what one host sends out of eth0. */
export class HostNetem {
  private delayer: ManagedProcess | undefined;
  /** "tc netem" or "nfqueue": how the law is applied. */
  mode: "tc netem" | "nfqueue" = "tc netem";

  constructor(
    readonly ns: string,
    private readonly spec: NetemSpec,
    private readonly python: string,
  ) {}

  async start(seed: number): Promise<void> {
    try {
      nsRun(this.ns, ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", ...netemArgs(this.spec)]);
      return;
    } catch {
      this.mode = "nfqueue";
    }
    const { delayMs, jitterMs, lossPercent } = this.spec;
    this.delayer = new ManagedProcess(nsWrap(this.ns)[0]!, [...nsWrap(this.ns).slice(1), this.python, join(import.meta.dirname, "netdelay.py"), QUEUE, String(delayMs), String(jitterMs), String(lossPercent), String(seed)], { name: `netdelay ${this.ns}`, keepLines: 20 });
    await this.delayer.waitForLine(/^netdelay ready/, 15_000);
    // --queue-bypass: should the delayer die, packets pass instead of being dropped.
    nsRun(this.ns, ["iptables", "-A", "OUTPUT", "-o", "eth0", "-j", "NFQUEUE", "--queue-num", QUEUE, "--queue-bypass"]);
  }

  /** The delayer's pid (not starved with its host: the kernel's netem would not be). */
  get pids(): number[] {
    return this.delayer?.pid !== undefined ? [this.delayer.pid] : [];
  }

  /** Packets sent out of eth0 and dropped by the law so far. */
  counters(): { sent: number; dropped: number } {
    if (this.mode === "tc netem") {
      const out = nsRun(this.ns, ["tc", "-s", "qdisc", "show", "dev", "eth0"]);
      const m = /Sent \d+ bytes (\d+) pkt \(dropped (\d+)/.exec(out);
      if (!m) throw new Error(`no netem counters on eth0 in ${this.ns}:\n${out}`);
      return { sent: Number(m[1]), dropped: Number(m[2]) };
    }
    const m = [...(this.delayer?.output(20) ?? "").matchAll(/packets (\d+) dropped (\d+)/g)].at(-1);
    return { sent: Number(m?.[1] ?? 0), dropped: Number(m?.[2] ?? 0) };
  }

  async stop(): Promise<void> {
    if (this.mode === "tc netem") {
      nsRun(this.ns, ["tc", "qdisc", "del", "dev", "eth0", "root"]);
      return;
    }
    nsRun(this.ns, ["iptables", "-D", "OUTPUT", "-o", "eth0", "-j", "NFQUEUE", "--queue-num", QUEUE, "--queue-bypass"]);
    this.delayer?.signal("SIGTERM");
    await this.delayer?.waitForExit(5000).catch(() => this.delayer?.kill());
  }
}

const CPU_MOUNT = "/sys/fs/cgroup/cpu";
/** CFS period of the throttle: the quota is handed out per 100 ms, as the kernel's default period. */
const PERIOD_US = 100_000;
let mounted: string | undefined;

/**
 * The cgroup v1 cpu hierarchy. `ip netns exec` gives the fault lab's hub a mount namespace of its
 * own with a fresh /sys and no cgroup mounts; there the same hierarchy is mounted again on a
 * temporary directory (private to that mount namespace, gone with it). Clear error where the
 * cgroup v1 cpu controller cannot be had.
 */
export function cpuRoot(): string {
  if (existsSync(join(CPU_MOUNT, "cpu.cfs_quota_us"))) return CPU_MOUNT;
  if (mounted) return mounted;
  const dir = mkdtempSync(join(tmpdir(), "rl-cpu-cgroup-"));
  try {
    execFileSync("mount", ["-t", "cgroup", "-o", "cpu", "routeleader-lab", dir], { stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    rmdirSync(dir);
    throw new Error(`CPU starvation needs the cgroup v1 cpu controller: not at ${CPU_MOUNT}, and 'mount -t cgroup -o cpu' refused (${(err as { stderr?: string }).stderr?.trim() || (err as Error).message})`);
  }
  mounted = dir;
  return dir;
}

/** Unmounts what cpuRoot() mounted, if anything. */
export function releaseCpuRoot(): void {
  if (!mounted) return;
  execFileSync("umount", [mounted]);
  rmdirSync(mounted);
  mounted = undefined;
}

/** One host's cgroup under the cpu controller: unlimited, except during a starvation burst. */
export class HostCpu {
  readonly dir: string;
  private spinner: ManagedProcess | undefined;

  constructor(
    readonly ns: string,
    name: string,
  ) {
    this.dir = join(cpuRoot(), name);
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, "cpu.cfs_period_us"), String(PERIOD_US));
    writeFileSync(join(this.dir, "cpu.cfs_quota_us"), "-1");
  }

  /** Moves every process now in the host's namespace, but `exclude`, into the cgroup (children inherit it). */
  adopt(exclude: readonly number[] = []): number {
    const pids = nsPids(this.ns).filter((p) => !exclude.includes(p));
    for (const pid of pids) {
      try {
        writeFileSync(join(this.dir, "cgroup.procs"), String(pid));
      } catch {
        // exited meanwhile
      }
    }
    return pids.length;
  }

  /** Cuts the host to `percent` % of one core and starts a busy loop in the same cgroup. */
  starve(percent: number, spinner: boolean, exclude: readonly number[] = []): void {
    this.adopt(exclude);
    writeFileSync(join(this.dir, "cpu.cfs_quota_us"), String(Math.max(1000, Math.round((PERIOD_US * percent) / 100))));
    if (spinner) {
      // The shell joins the cgroup itself before it spins, so it never runs unthrottled.
      this.spinner = new ManagedProcess(nsWrap(this.ns)[0]!, [...nsWrap(this.ns).slice(1), "sh", "-c", `echo $$ > ${join(this.dir, "cgroup.procs")} && exec sh -c 'while :; do :; done'`], { name: `busy loop ${this.ns}` });
    }
  }

  async relieve(): Promise<void> {
    await this.spinner?.stop(2000);
    this.spinner = undefined;
    writeFileSync(join(this.dir, "cpu.cfs_quota_us"), "-1");
  }

  /** Periods in which the cgroup was throttled, and for how long in all (cpu.stat). */
  throttled(): { periods: number; ms: number } {
    const stat = readFileSync(join(this.dir, "cpu.stat"), "utf8");
    const field = (k: string) => Number(new RegExp(`^${k} (\\d+)`, "m").exec(stat)?.[1] ?? 0);
    return { periods: field("nr_throttled"), ms: Math.round(field("throttled_time") / 1e6) };
  }

  /** Moves what is left back to the root cgroup and removes this one. */
  async remove(): Promise<void> {
    await this.relieve();
    const procs = readFileSync(join(this.dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
    for (const pid of procs) {
      try {
        writeFileSync(join(cpuRoot(), "cgroup.procs"), pid);
      } catch {
        // exited meanwhile
      }
    }
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        rmdirSync(this.dir);
        return;
      } catch {
        // a process still moving out
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(`could not remove the cgroup ${this.dir}: processes left in it (${readFileSync(join(this.dir, "cgroup.procs"), "utf8").trim().split("\n").join(", ")})`);
  }
}
