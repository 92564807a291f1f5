export { HealthMonitor, checkConsulId, checkTtlMs, CHECK_TTL_FLOOR_MS, DEFAULT_BEFORE_FAIL_TIMEOUT_MS } from "./monitor.js";
export type { CheckState, HealthMonitorDeps } from "./monitor.js";
export { step, initialHysteresis, describeCounters } from "./hysteresis.js";
export type { Hysteresis } from "./hysteresis.js";
export { createCheckRunner } from "./run.js";
export type { CheckRunner, RunnerDeps } from "./run.js";
export type { CheckResult } from "./result.js";
export { runProcess } from "./process.js";
export type { ProcessRunner, ProcessResult } from "./process.js";
