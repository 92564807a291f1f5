import type { AgentEvent, SimCluster, SimNode } from "../../test/support/cluster.js";
import { waitUntil } from "../../test/support/process.js";

/**
 * Building blocks shared by the election benchmark and the demo: inject a fault on a
 * simulated node, then find out from the agents' own events and from moto when the route
 * moved.
 */

/** The check every simulated node runs: a file in its state dir that a fault removes. */
export const ALIVE_CHECK = { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 1, fall: 2 } };


export const eventTime = (e: AgentEvent): number => Date.parse(e.time);

/** How many events each node has logged so far: a "since" for the waits below. */
export function marks(sim: SimCluster): Map<string, number> {
  return new Map(sim.nodes.map((n) => [n.name, n.events.length]));
}

/** The first `acquired` of `route` by any node other than `exclude`, logged after `since`. */
export function nextAcquire(sim: SimCluster, route: string, since: Map<string, number>, timeoutMs: number, exclude?: SimNode): Promise<{ node: SimNode; event: AgentEvent }> {
  const candidates = sim.nodes.filter((n) => n !== exclude);
  return Promise.any(
    candidates.map(async (node) => {
      const event = await node.waitForEvent((e) => e.event === "acquired" && e.route === route, timeoutMs, since.get(node.name));
      return { node, event };
    }),
  ).catch((err: AggregateError) => {
    throw new Error(`no node acquired ${route} within ${timeoutMs} ms: ${(err.errors[0] as Error | undefined)?.message ?? err.message}`);
  });
}

/** Polls moto every `intervalMs` until the table points the destination as `test` wants; returns when it first did. */
export async function waitForTarget(sim: SimCluster, table: string, destination: string, test: (target: string | undefined) => boolean, timeoutMs: number, intervalMs = 20): Promise<number> {
  return waitUntil(
    `${table} ${destination} target`,
    async () => {
      const target = await sim.routeTarget(table, destination);
      return test(target) ? Date.now() : undefined;
    },
    { timeoutMs, intervalMs },
  );
}

/** Resolves when the node has a Consul session again (it can contend) after `since`. */
export async function waitForSession(node: SimNode, since: number, timeoutMs: number): Promise<void> {
  await node.waitForEvent((e) => e.msg === "session created", timeoutMs, since);
}

export interface Figures {
  trials: number;
  p50_ms: number;
  p95_ms: number;
  max_ms: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] as number;
}

export function figures(values: number[]): Figures {
  const sorted = [...values].sort((a, b) => a - b);
  return { trials: sorted.length, p50_ms: percentile(sorted, 0.5), p95_ms: percentile(sorted, 0.95), max_ms: sorted[sorted.length - 1] as number };
}
