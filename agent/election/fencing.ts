import type { Clock } from "../clock.js";
import type { ConsulApi } from "../consul/index.js";
import type { Action } from "./decide.js";
import type { ElectionDeps } from "./deps.js";
import type { ElectionEvent } from "./events.js";
import { ActionExecutor } from "./executor.js";
import { encodeHolder, holderOf, routeKey } from "./holder.js";
import type { Outcome } from "./results.js";

/**
 * The fencing gate asked right before every route write attempt: inside the local lease, and
 * a consistent read of the key shows this session with the LockIndex recorded at acquire.
 * Consul unreachable or no leader is "unknown", and unknown never writes.
 */
export interface FenceDeps {
  api: ConsulApi;
  cluster: string;
  clock: Clock;
  /** The local lease deadline of a session (monotonic ms). */
  leaseDeadline: (session: string) => number;
  /** Told every refusal, with its reason. */
  onRefused: (route: string, reason: string) => void;
}

/** The consistent read is bounded well inside the write timeout. */
const VERIFY_TIMEOUT_MS = 1000;

export async function verifyOwnership(deps: FenceDeps, route: string, session: string, lockIndex: number): Promise<boolean> {
  const { clock } = deps;
  if (clock.now() > deps.leaseDeadline(session)) {
    deps.onRefused(route, "lease deadline passed");
    return false;
  }
  try {
    const read = await deps.api.kvRead(routeKey(deps.cluster, route), { consistent: true, timeoutMs: VERIFY_TIMEOUT_MS });
    const entry = read.entries[0];
    if (entry?.session !== session || entry.lockIndex !== lockIndex) {
      deps.onRefused(route, `key no longer ours (session ${entry?.session ?? "none"}, lockIndex ${entry?.lockIndex ?? "-"})`);
      return false;
    }
  } catch (err) {
    deps.onRefused(route, `ownership unknown: ${(err as Error).message}`);
    return false;
  }
  // The read itself took time: the lease is checked again after it.
  if (clock.now() > deps.leaseDeadline(session)) {
    deps.onRefused(route, "lease deadline passed");
    return false;
  }
  return true;
}

/** The election's executor: every write attempt passes the fencing gate; a refusal is an event. */
export function fencedExecutor(deps: ElectionDeps, sessions: { leaseDeadline(session: string): number }, emit: (event: ElectionEvent) => void, onOutcome: (id: number, action: Action, outcome: Outcome) => void): ActionExecutor {
  const fence: FenceDeps = { api: deps.api, cluster: deps.config.cluster, clock: deps.clock, leaseDeadline: (s) => sessions.leaseDeadline(s), onRefused: (route, reason) => emit({ type: "writeRefused", route, reason, at: deps.clock.now() }) };
  return new ActionExecutor({
    api: deps.api,
    cluster: deps.config.cluster,
    routes: deps.routes,
    log: deps.log,
    verify: (route, session, lockIndex) => verifyOwnership(fence, route, session, lockIndex),
    holderValue: (route, session, lockIndex, release) => encodeHolder(holderOf(deps.identity, deps.clock, session, lockIndex, release, deps.fallbackTarget?.(route))),
    onOutcome,
  });
}
