import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { CheckConfig } from "../config/schema.js";
import type { ProcessRunner } from "./process.js";
import { formatLatency, type CheckResult } from "./result.js";

type NatCheck = Extract<CheckConfig, { type: "nat" }>;

export interface NatDeps {
  run: ProcessRunner;
  /** Where /proc is; tests point this at a directory of their own. Default "/proc". */
  procRoot?: string;
  /**
   * Whether this instance's ENI has source/destination check off. The routes module reads it
   * from EC2; undefined (not injected) means "not verified here".
   */
  sourceDestCheckOff?: () => Promise<boolean>;
}

const COMMAND_TIMEOUT_FLOOR_MS = 50;

/**
 * Proves this host can forward and translate: IPv4 forwarding on (and IPv6 forwarding when
 * `ipv6`), a MASQUERADE rule (iptables, else nftables; reading them needs CAP_NET_ADMIN) and
 * source/destination check off. Fails with the first reason found, naming it.
 */
export async function runNat(check: NatCheck, deps: NatDeps, signal?: AbortSignal): Promise<CheckResult> {
  const started = performance.now();
  const procRoot = deps.procRoot ?? "/proc";
  const passed: string[] = [];
  const result = (ok: boolean, detail: string): CheckResult => {
    const ms = performance.now() - started;
    return { ok, output: `nat: ${[...passed, detail].filter(Boolean).join(", ")}, ${formatLatency(ms)}`, latencyMs: ms };
  };

  const sysctls: [string, string][] = [["net.ipv4.ip_forward", "sys/net/ipv4/ip_forward"]];
  if (check.ipv6) sysctls.push(["net.ipv6.conf.all.forwarding", "sys/net/ipv6/conf/all/forwarding"]);
  for (const [name, path] of sysctls) {
    const value = await readFile(join(procRoot, path), "utf8").then(
      (text) => text.trim(),
      (err: NodeJS.ErrnoException) => `unreadable (${err.code ?? err.message})`,
    );
    if (value !== "1") return result(false, `not forwarding: ${name} = ${value}`);
    passed.push(`${name} = 1`);
  }

  if (check.requireMasquerade) {
    const budget = () => Math.max(COMMAND_TIMEOUT_FLOOR_MS, check.timeout - (performance.now() - started));
    const found = await findMasquerade(deps.run, budget, signal);
    if (!found.ok) return result(false, found.detail);
    passed.push(found.detail);
  }

  if (deps.sourceDestCheckOff) {
    const off = await deps.sourceDestCheckOff().catch(() => undefined);
    if (off === undefined) return result(false, "source/dest check state unknown");
    if (!off) return result(false, "source/dest check is ON: the instance drops forwarded traffic");
    passed.push("source/dest check off");
  }
  return result(true, "");
}

async function findMasquerade(run: ProcessRunner, budget: () => number, signal?: AbortSignal): Promise<{ ok: boolean; detail: string }> {
  const iptables = await run(["iptables", "-t", "nat", "-S", "POSTROUTING"], { timeoutMs: budget(), signal });
  if (iptables.code === 0 && /-j MASQUERADE\b/.test(iptables.stdout)) return { ok: true, detail: "MASQUERADE in iptables nat POSTROUTING" };
  const nft = await run(["nft", "list", "ruleset"], { timeoutMs: budget(), signal });
  if (nft.code === 0 && /\bmasquerade\b/.test(nft.stdout)) return { ok: true, detail: "masquerade in nftables ruleset" };
  return { ok: false, detail: `no MASQUERADE rule (iptables: ${describe(iptables)}; nft: ${describe(nft)})` };
}

function describe(res: Awaited<ReturnType<ProcessRunner>>): string {
  if (res.spawnError) return `not runnable, ${res.spawnError}`;
  if (res.timedOut) return "timed out";
  if (res.code !== 0) return `exit ${res.code ?? res.signal}${res.stderr.trim() ? ` '${res.stderr.trim().split("\n")[0]}'` : ""}`;
  return "no masquerade rule";
}
