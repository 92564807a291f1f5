import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** The real components scripts/install-deps.sh installs, and where it records them. */
export type Component = "consul" | "aemm" | "moto" | "cfnLint";

const ENV_NAMES: Record<Component, string> = {
  consul: "ROUTELEADER_CONSUL_BIN",
  aemm: "ROUTELEADER_AEMM_BIN",
  moto: "ROUTELEADER_MOTO_BIN",
  cfnLint: "ROUTELEADER_CFN_LINT_BIN",
};

export function cacheDir(): string {
  return process.env.ROUTELEADER_CACHE ?? join(homedir(), ".cache", "routeleader");
}

function recordedPaths(): Record<string, string> {
  const file = join(cacheDir(), "paths.env");
  if (!existsSync(file)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/**
 * Path of a component's binary: the environment variable, else what install-deps recorded.
 * A missing component is an error, never a skip: CI must not pass by running less.
 */
export function binaryPath(component: Component): string {
  const envName = ENV_NAMES[component];
  const path = process.env[envName] ?? recordedPaths()[envName];
  if (!path || !existsSync(path)) {
    throw new Error(`${component} is not installed (${envName} unset and nothing in ${cacheDir()}/paths.env): run 'npm run deps' (scripts/install-deps.sh)`);
  }
  return path;
}

/** The version of the Consul binary the suites and benchmarks run ("1.16.1"), from `consul version`. */
export function consulVersion(): string {
  const bin = binaryPath("consul");
  const m = /^Consul v(\S+)/.exec(execFileSync(bin, ["version"], { encoding: "utf8" }));
  if (!m) throw new Error(`${bin} version: no "Consul v..." line`);
  return m[1] as string;
}
