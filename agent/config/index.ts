export { loadConfig, parseConfig, validateConfig, configWarnings, ConfigError, PROFILE_DEFAULTS, formatPath } from "./load.js";
export { checkRules, hostProblem, endpointProblem } from "./rules.js";
export type { Config, ConfigProblem } from "./load.js";
export { configSchema, checkSchema, tableSelectorSchema } from "./schema.js";
export type { RawConfig, CheckConfig, RouteConfig, TableSelector } from "./schema.js";
export { parseCidr, cidrsOverlap } from "./cidr.js";
export type { Cidr } from "./cidr.js";
export { parseDuration, formatDuration } from "./duration.js";
