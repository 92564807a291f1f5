import type { CheckConfig } from "../config/schema.js";
import type { ProcessRunner } from "./process.js";
import type { OneHost } from "./any-of.js";
import { formatLatency, type CheckResult } from "./result.js";

type PingCheck = OneHost<Extract<CheckConfig, { type: "ping" }>>;

export interface PingDeps {
  run: ProcessRunner;
  /** The ping program and any prefix, e.g. ["ip", "netns", "exec", "ns1", "ping"]. Default ["ping"]. */
  command?: readonly string[];
}

/**
 * One ICMP echo through the system ping (iputils). Without root, iputils ping uses an ICMP
 * datagram socket, which the kernel allows only to groups inside net.ipv4.ping_group_range
 * (e.g. `sysctl net.ipv4.ping_group_range="0 2147483647"`); otherwise the binary needs
 * cap_net_raw (`setcap cap_net_raw+ep /usr/bin/ping`, the default on most distributions).
 * `-W` bounds the wait for the reply (fractional seconds need iputils ≥ 20210202) and `-w`
 * the whole run; the process is also killed at the check's timeout.
 */
export async function runPing(check: PingCheck, deps: PingDeps, signal?: AbortSignal): Promise<CheckResult> {
  const seconds = check.timeout / 1000;
  const argv = [
    ...(deps.command ?? ["ping"]),
    "-n",
    "-c",
    "1",
    "-W",
    String(Number(seconds.toFixed(3))),
    "-w",
    String(Math.max(1, Math.ceil(seconds))),
    check.host,
  ];
  const res = await deps.run(argv, { timeoutMs: check.timeout, signal });
  const what = `ping ${check.host}`;
  if (res.spawnError) return { ok: false, output: `${what}: cannot run ${argv[0]}: ${res.spawnError}`, latencyMs: res.durationMs };
  if (res.timedOut) return { ok: false, output: `${what}: no reply within ${check.timeout} ms`, latencyMs: res.durationMs };
  const rtt = /time[=<]([\d.]+) ?ms/.exec(res.stdout);
  if (res.code === 0 && rtt) {
    const ms = Number(rtt[1]);
    return { ok: true, output: `${what}: reply in ${formatLatency(ms)}`, latencyMs: ms };
  }
  const why = lastLine(res.stderr) || summaryLine(res.stdout) || `exit ${res.code ?? res.signal}`;
  return { ok: false, output: `${what}: no reply (${why})`, latencyMs: res.durationMs };
}

function lastLine(text: string): string {
  return text.trim().split("\n").pop()?.trim() ?? "";
}

function summaryLine(text: string): string {
  return /\d+ packets transmitted.*/.exec(text)?.[0].trim() ?? "";
}
