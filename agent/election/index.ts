/**
 * Per-route leadership through Consul session locks, decided level-triggered.
 *
 * Not a single-writer guarantee: Consul sessions prefer liveness over safety and EC2 route
 * writes cannot be conditional. What bounds a stale write: the consistent ownership read
 * and the local lease deadline before every write, writes with a hard timeout shorter than
 * lockDelay − margin, and a new holder that re-asserts its routes through its first
 * lock-delay window. Only local monotonic time is used.
 */
export { Election, HANDOVER_WAIT_MS } from "./election.js";
export type { ElectionDeps, HealthView, ElectionPolicy } from "./deps.js";
export type { RouteStatus, RoutePhase } from "./status.js";
export { checkSetKey, livenessCheckId } from "./sessions.js";
export type { ConvergeItem, RouteWriter, WriteGate } from "./executor.js";
export type { ElectionEvent, ElectionListener, HolderInfo, LossReason, ReleaseReason } from "./events.js";
export { routeKey, routesPrefix, routeOfKey, parseHolder, encodeHolder } from "./holder.js";
export { decide, initialLocal } from "./decide.js";
export type { RouteView, RouteLocal, Action, KeyView } from "./decide.js";
export { applyOutcome } from "./results.js";
export type { Outcome } from "./results.js";
