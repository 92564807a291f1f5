export { createHookRunner } from "./runner.js";
export type { HookRunner, HookRunnerOptions } from "./runner.js";
export { hookInvocation } from "./environment.js";
export type { HookInvocation, HookName } from "./environment.js";
