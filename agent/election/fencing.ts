import type { Clock } from "../clock.js";
import type { ConsulApi } from "../consul/index.js";
import { routeKey } from "./holder.js";

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
