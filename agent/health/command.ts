import type { CheckConfig } from "../config/schema.js";
import type { ProcessRunner } from "./process.js";
import { formatLatency, quote, type CheckResult } from "./result.js";

type CommandCheck = Extract<CheckConfig, { type: "command" }>;

/** Runs the argv (no shell); exit 0 passes. Past the timeout its whole process group is killed. */
export async function runCommand(check: CommandCheck, run: ProcessRunner, signal?: AbortSignal): Promise<CheckResult> {
  const res = await run(check.command, { timeoutMs: check.timeout, signal });
  const what = `command ${check.command.join(" ")}`;
  const took = formatLatency(res.durationMs);
  const said = (res.stderr.trim() || res.stdout.trim()).split("\n").pop() ?? "";
  const detail = said ? `: ${quote(said)}` : "";
  if (res.spawnError) return { ok: false, output: `${what}: cannot start: ${res.spawnError}`, latencyMs: res.durationMs };
  if (res.timedOut) return { ok: false, output: `${what}: killed after the ${check.timeout} ms timeout`, latencyMs: res.durationMs };
  if (res.aborted) return { ok: false, output: `${what}: stopped`, latencyMs: res.durationMs };
  if (res.code === 0) return { ok: true, output: `${what}: exit 0, ${took}${detail}`, latencyMs: res.durationMs };
  const how = res.code === null ? `killed by ${res.signal}` : `exit ${res.code}`;
  return { ok: false, output: `${what}: ${how}, ${took}${detail}`, latencyMs: res.durationMs };
}
