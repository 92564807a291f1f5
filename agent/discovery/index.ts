export { PeerDiscovery } from "./discovery.js";
export type { DiscoveryResult, PeerDiscoveryDeps } from "./discovery.js";
export { ASG_TAG, defaultMemberInstanceId, forceLeaveCandidates, peerTagFilters, toPeerInstance } from "./peers.js";
export type { PeerInstance } from "./peers.js";
