import type { Clock } from "../clock.js";
import type { Logger } from "../observe/log.js";
import type { ConsulApi } from "./client.js";

/** At most one rejoin this often: a join is cheap, but the refusals that ask for it come every retry. */
export const REJOIN_MIN_INTERVAL_MS = 5000;

/**
 * Refusals this long before the first join. Right after a heal the healed node still holds
 * every peer "failed" in its gossip state, and pushing that at once got a healthy holder's
 * session invalidated (a second route move) in 3 of 11 lab trials; serf's own reconnect,
 * later, rarely did.
 */
export const REJOIN_AFTER_MS = 10_000;
const EPISODE_GAP_MS = 5000;

/** Serf member status of a member that left on purpose: not joined again. */
const LEFT = 3;

export interface GossipRejoinDeps {
  api: Pick<ConsulApi, "members" | "join">;
  clock: Clock;
  log: Logger;
  minIntervalMs?: number;
  afterMs?: number;
  random?: () => number;
}

function shuffled<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/**
 * After a partition heals, each side of Consul's gossip has marked the other failed and no
 * longer probes it: serf tries failed members again only every 30 s (its reconnect interval),
 * and until then the leader keeps this node's serfHealth critical and refuses it a session, so
 * a healed node cannot stand by for up to half a minute. A join to the servers exchanges the
 * full member state at once: this node learns it was declared failed, refutes it, and is alive
 * again within about a second.
 */
export class GossipRejoin {
  private lastAt = Number.NEGATIVE_INFINITY;
  private lastRequestAt = Number.NEGATIVE_INFINITY;
  private episodeStart: number | undefined;
  private running = false;

  constructor(private readonly deps: GossipRejoinDeps) {}

  /** Joins a server in the background once refusals have gone on for a while, at most once per interval. */
  request(reason: string): void {
    const now = this.deps.clock.now();
    // Refusals come every session-create retry (≤ 2 s apart); a longer silence starts a new episode.
    if (this.episodeStart === undefined || now - this.lastRequestAt > EPISODE_GAP_MS) this.episodeStart = now;
    this.lastRequestAt = now;
    if (now - this.episodeStart < (this.deps.afterMs ?? REJOIN_AFTER_MS)) return;
    if (this.running || now - this.lastAt < (this.deps.minIntervalMs ?? REJOIN_MIN_INTERVAL_MS)) return;
    this.lastAt = now;
    this.running = true;
    void this.rejoin(reason).finally(() => (this.running = false));
  }

  /**
   * Joins one server (or, without servers in view, one member), trying the next on failure:
   * a join of all of them at once makes each push this node's stale view of the others (every
   * peer "failed" while it was cut off) and, by confirming one another's suspicion, can get a
   * healthy peer declared failed before it refutes (its sessions would be invalidated).
   */
  async rejoin(reason: string): Promise<{ joined?: string; failed: string[] }> {
    const { api, clock, log } = this.deps;
    const started = clock.now();
    let members;
    try {
      members = (await api.members()).filter((m) => m.status !== LEFT);
    } catch (err) {
      log.warn({ step: "consul", reason, err: (err as Error).message }, "rejoin: could not list the Consul members");
      return { failed: [] };
    }
    const servers = members.filter((m) => m.tags.role === "consul");
    const addresses = shuffled([...new Set((servers.length ? servers : members).map((m) => (m.port ? `${m.addr}:${m.port}` : m.addr)))], this.deps.random ?? Math.random);
    const failed: string[] = [];
    for (const address of addresses) {
      try {
        await api.join(address);
        log.info({ step: "consul", reason, joined: address, failed, ms: Math.round(clock.now() - started) }, `rejoined Consul's gossip through ${address}`);
        return { joined: address, failed };
      } catch {
        failed.push(address);
      }
    }
    log.warn({ step: "consul", reason, failed, ms: Math.round(clock.now() - started) }, "rejoin: no Consul server accepted the join");
    return { failed };
  }
}
