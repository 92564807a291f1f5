import type { Clock } from "../clock.js";
import type { Config, RouteConfig } from "../config/index.js";
import type { ConsulApi, KvEntry } from "../consul/index.js";
import type { Identity } from "../identity/index.js";
import type { Logger } from "../observe/log.js";
import type { PeerCutOff } from "../peers/verdict.js";
import type { RouteWriter } from "./executor.js";

/** What the election needs from the health monitor. */
export interface HealthView {
  allPassing(names: readonly string[]): boolean;
}

/** Failover policy (AZ preference, failback hold-downs, operator handovers). */
export interface ElectionPolicy {
  mayContend(route: RouteConfig, ctx: { now: number; freeSince?: number }): boolean;
  handOver(route: RouteConfig, now: number): "failback" | "handover" | undefined;
  /** When the route's verdicts could next change with time alone (monotonic); the loop wakes then. */
  nextChangeAt?(route: RouteConfig, ctx: { now: number; freeSince?: number }): number | undefined;
  /** Called after a voluntary handover's release is confirmed. */
  handedOver?(route: RouteConfig, reason: "failback" | "handover"): Promise<void>;
}

export interface ElectionDeps {
  api: ConsulApi;
  config: Config;
  identity: Identity;
  clock: Clock;
  log: Logger;
  routes: RouteWriter;
  health: HealthView;
  /** Consul service id of this node; its liveness check is `${serviceId}:liveness`. */
  serviceId: string;
  checkId: (checkName: string) => string;
  policy?: ElectionPolicy;
  /** Every snapshot of the routes prefix (the policy reads failback markers and handover requests). */
  onSnapshot?: (entries: readonly KvEntry[]) => void;
  /** The latest episode of this node being cut off from a majority of its peers (peer heartbeats), for /status. */
  cutOff?: () => PeerCutOff | undefined;
  random?: () => number;
  /** Consul refused a session because this node's serfHealth is critical: the agent rejoins the gossip (agent/consul/rejoin.ts). */
  onNodeFailed?: (reason: string) => void;
  /** The fallback writer's election: liveness is kept by the main election's heartbeat (see Sessions). */
  sharedLiveness?: () => number;
  /** The fallback writer's election: the target its holder value names (marks the key as held for the fallback). */
  fallbackTarget?: (route: string) => string | undefined;
}
