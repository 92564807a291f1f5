/** What a route's holder key says, parsed leniently from the KV value. */
export interface HolderInfo {
  instanceId: string;
  az: string;
  eni: string;
  privateIp: string;
  session: string;
  lockIndex: number;
  acquiredAt: string;
  agentVersion: string;
  /** Set when the holder released the key on purpose; the value is kept for operators. */
  releasedAt?: string;
  releaseReason?: string;
  /** Set by a fallback writer: the route points at this target (nat-… or eni-…), not at the instance. */
  fallback?: string;
}

export type LossReason = "sessionInvalidated" | "keyTaken" | "leaseExpired" | "keyDeleted";
export type ReleaseReason = "checkFailed" | "shutdown" | "drain" | "handover" | "failback" | "once" | "ineligible" | "writeRefused" | "removed";

/**
 * Transitions the election emits, de-duplicated: logs, metrics, hooks and Consul service tags
 * subscribe to these. Every loss and release carries its reason.
 */
export type ElectionEvent =
  | { type: "acquired"; route: string; lockIndex: number; previousHolder?: string; waitedMs: number; at: number }
  | { type: "released"; route: string; reason: ReleaseReason; heldMs: number; at: number }
  | { type: "lost"; route: string; reason: LossReason; newHolder?: string; at: number }
  | { type: "leaderChanged"; route: string; holder?: HolderInfo; at: number }
  | { type: "routeWritten"; route: string; action: string; tables: string[]; ms: number; at: number }
  | { type: "writeRefused"; route: string; reason: string; at: number }
  | { type: "writeFailed"; route: string; fatal: boolean; reason: string; retryInMs: number; at: number }
  | { type: "blocked"; route: string; reason: string; forMs: number; at: number };

export type ElectionListener = (event: ElectionEvent) => void;
