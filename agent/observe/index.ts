export { createLogger } from "./log.js";
export type { Logger } from "./log.js";
export { createMetrics, processMetrics } from "./metrics.js";
export type { Metrics, MetricsOptions, CallOutcome, CallRecorder } from "./metrics.js";
export { startStatusServer } from "./http.js";
export type { StatusServer, StatusServerOptions, Health } from "./http.js";
export { parseListenAddress, DEFAULT_LISTEN_HOST } from "./listen-address.js";
export type { ListenAddress } from "./listen-address.js";
