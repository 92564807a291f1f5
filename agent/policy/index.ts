export { judgePeer, mayContend, nextPolicyChangeAt, shouldHandOver, updateHealthHistory, SERF_HEALTH } from "./decide.js";
export type { ContendVerdict, HandoverRequest, HealthHistory, PeerRouteHealth, PeerView, PolicyContext } from "./decide.js";
export { FailoverPolicy, failbackKey, handoverKey, parseHandover, HANDOVER_REQUEST_TTL_MS } from "./runtime.js";
export { resolvePreferredAzs, singleAz } from "./preferred-az.js";
