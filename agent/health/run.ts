import type { CheckConfig } from "../config/schema.js";
import { runAnyHost } from "./any-of.js";
import { runCommand } from "./command.js";
import { runHttp } from "./http.js";
import { runNat, type NatDeps } from "./nat.js";
import { runPing } from "./ping.js";
import { runProcess, type ProcessRunner } from "./process.js";
import type { CheckResult } from "./result.js";
import { runTcp, type TcpDeps } from "./tcp.js";

/** Runs one check once. Never throws: a broken check is a failing result with a reason. */
export type CheckRunner = (check: CheckConfig, signal?: AbortSignal) => Promise<CheckResult>;

export interface RunnerDeps {
  /** How programs are run (ping, command, iptables/nft). Default: runProcess. */
  run?: ProcessRunner;
  /** Prefix ping with this argv, e.g. ["ip", "netns", "exec", "ns1", "ping"]. */
  pingCommand?: readonly string[];
  tcp?: TcpDeps;
  nat?: Omit<NatDeps, "run">;
}

export function createCheckRunner(deps: RunnerDeps = {}): CheckRunner {
  const run = deps.run ?? runProcess;
  return async (check, signal) => {
    try {
      switch (check.type) {
        case "ping":
          return await runAnyHost(check, (one, stop) => runPing(one, { run, ...(deps.pingCommand ? { command: deps.pingCommand } : {}) }, stop), signal);
        case "tcp":
          return await runAnyHost(check, (one, stop) => runTcp(one, deps.tcp, stop), signal);
        case "http":
          return await runHttp(check, signal);
        case "command":
          return await runCommand(check, run, signal);
        case "nat":
          return await runNat(check, { ...deps.nat, run }, signal);
      }
    } catch (err) {
      return { ok: false, output: `${check.type} check failed to run: ${(err as Error).message}`, latencyMs: 0 };
    }
  };
}
