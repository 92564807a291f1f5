/**
 * Per-route leadership through Consul session locks.
 *
 * Not a single-writer guarantee: Consul sessions prefer liveness over safety and EC2 route
 * writes cannot be conditional. What bounds a stale write: the consistent ownership read
 * and the local lease deadline before every write, writes with a hard timeout shorter than
 * lockDelay − margin, and a new holder that re-asserts its routes through its first
 * lock-delay window. Only local monotonic time is used.
 */
export { Election, checkSetKey, livenessCheckId, HANDOVER_WAIT_MS } from "./runner.js";
export type { ElectionDeps, RouteWriter, HealthView, ElectionPolicy, WriteGate } from "./runner.js";
export type { ElectionEvent, ElectionListener, HolderInfo, LossReason, ReleaseReason } from "./events.js";
export { routeKey, routesPrefix, routeOfKey, parseHolder, encodeHolder } from "./holder.js";
export { step, initialState } from "./machine.js";
export type { RouteState, Phase } from "./machine.js";
