/**
 * The peers' verdict on a holder, pure and on a fake clock: who is silent, whether a majority
 * of the cluster's members agrees that a holder is silent, and which member destroys its
 * session. The quorum counts every known member (the silent holder too), never only the ones
 * that still answer: a lone partitioned peer hears nobody, yet its vote is one of N.
 *
 * Silent: heard before and not heard for the silence window. For this node's own vote on a
 * holder, also: never heard although it advertises a heartbeat address and this node has
 * expected it for the window (a follower that restarted after the holder's last heartbeat could
 * never vote otherwise). Such a holder is never in this node's reports to the others, so a
 * majority always includes a member that heard the holder and lost it: members that all just
 * started, or a heartbeat port closed everywhere, never evict anyone.
 */

/** What this node last heard from one peer (monotonic ms of receipt) and the peers it reported silent. */
export interface PeerHeard {
  readonly at: number;
  readonly silent: readonly string[];
}

/** A Consul key held by a session: the route, the holder's instance id, its session. */
export interface HeldKey {
  readonly route: string;
  readonly holder: string;
  readonly session: string;
}

export interface VerdictInput {
  readonly self: string;
  /** Every member of the cluster as Consul lists it (this node included). */
  readonly members: readonly string[];
  /** Last heartbeat received per peer. */
  readonly heard: ReadonlyMap<string, PeerHeard>;
  /**
   * Members that advertise a heartbeat address, and since when this node has expected their
   * heartbeats (it listens and saw them listed at that address). A member neither heard nor
   * expected (no address: an agent without peer heartbeats) is never judged silent.
   */
  readonly expectedSince?: ReadonlyMap<string, number>;
  readonly keys: readonly HeldKey[];
  readonly now: number;
  /** interval × misses: no heartbeat for this long is silence. */
  readonly silenceMs: number;
  /** A voter that is not the first in line destroys the session itself this long after it first saw the majority. */
  readonly backupAfterMs: number;
  /** Per session: when this node first saw a majority agree (kept by the caller from earlier verdicts). */
  readonly majoritySince: ReadonlyMap<string, number>;
  /** Sessions already destroyed by this node. */
  readonly destroyed: ReadonlySet<string>;
}

export interface Verdict {
  readonly holder: string;
  readonly session: string;
  readonly routes: readonly string[];
  /** Members that agree the holder is silent (this node first). */
  readonly voters: readonly string[];
  readonly quorum: number;
  /** This node destroys the session now. */
  readonly act: boolean;
  /** One sentence for the log. */
  readonly reason: string;
}

/** Peers this node heard before and has not heard for `silenceMs` (what its heartbeats report). */
export function silentPeers(self: string, heard: ReadonlyMap<string, PeerHeard>, now: number, silenceMs: number): string[] {
  return [...heard.entries()]
    .filter(([id, h]) => id !== self && now - h.at >= silenceMs)
    .map(([id]) => id)
    .sort();
}

export function quorumOf(members: number): number {
  return Math.floor(members / 2) + 1;
}

function fresh(h: PeerHeard | undefined, now: number, silenceMs: number): h is PeerHeard {
  return h !== undefined && now - h.at < silenceMs;
}

/** One verdict per silent holder of a key (none for a holder this node still hears, or never heard and does not expect yet). */
export function judgeHolders(input: VerdictInput): Verdict[] {
  const { self, heard, now, silenceMs } = input;
  const members = [...new Set([...input.members, self])].sort();
  const quorum = quorumOf(members.length);
  const bySession = new Map<string, { holder: string; routes: string[] }>();
  for (const k of input.keys) {
    const entry = bySession.get(k.session) ?? { holder: k.holder, routes: [] };
    entry.routes.push(k.route);
    bySession.set(k.session, entry);
  }
  const verdicts: Verdict[] = [];
  for (const [session, { holder, routes }] of bySession) {
    if (holder === self || !members.includes(holder) || input.destroyed.has(session)) continue;
    // Its last heartbeat, or (never heard) since when this node has expected one.
    const neverHeard = !heard.has(holder);
    const last = heard.get(holder)?.at ?? input.expectedSince?.get(holder);
    if (last === undefined || now - last < silenceMs) continue;
    const agreeing = members.filter((m) => m !== self && m !== holder && fresh(heard.get(m), now, silenceMs) && heard.get(m)!.silent.includes(holder));
    const voters = [self, ...agreeing];
    const base = { holder, session, routes: routes.sort(), voters, quorum };
    const silence = `${holder} ${neverHeard ? "never heard in" : "silent for"} ${Math.round(now - last)} ms`;
    if (voters.length < quorum) {
      verdicts.push({ ...base, act: false, reason: `${silence}, but only ${voters.length} of ${members.length} members agree (quorum ${quorum}): not evicting` });
      continue;
    }
    const first = [...voters].sort()[0];
    // A voter that never heard the holder may be the only one to see this majority (the others do not count it): it acts at once.
    const act = first === self || neverHeard || now - (input.majoritySince.get(session) ?? now) >= input.backupAfterMs;
    verdicts.push({
      ...base,
      act,
      reason: act
        ? `${silence} and ${voters.length} of ${members.length} members agree (quorum ${quorum}): destroying its session${first === self || neverHeard ? "" : ` (backup for ${first})`}`
        : `${silence}, ${voters.length} of ${members.length} agree: ${first} destroys its session`,
    });
  }
  return verdicts;
}

/** The latest time this node heard too few members to be with a majority: since when, until when (undefined: still), and what it heard. */
export interface PeerCutOff {
  readonly since: number;
  readonly until?: number;
  readonly heard: number;
  readonly peers: number;
}

/**
 * This node's own side of a partition: does it still hear enough members to be with a majority?
 * It counts itself and every member it cannot judge (no heartbeat address, or expected for less
 * than the silence window) on its side, and takes out the peers it expected and has not heard
 * for the window. Fewer than a quorum left: a majority on the other side may be destroying this
 * node's sessions, so what it holds is unconfirmed. Returns how many peers it hears, of how many.
 */
export function cutOffFromMajority(input: { self: string; members: readonly string[]; heard: ReadonlyMap<string, PeerHeard>; expectedSince: ReadonlyMap<string, number>; now: number; silenceMs: number }): { heard: number; peers: number } | undefined {
  const { self, heard, expectedSince, now, silenceMs } = input;
  const members = [...new Set([...input.members, self])];
  const lost = members.filter((m) => {
    const since = expectedSince.get(m);
    return m !== self && since !== undefined && now - since >= silenceMs && !fresh(heard.get(m), now, silenceMs);
  });
  if (members.length - lost.length >= quorumOf(members.length)) return undefined;
  return { heard: members.filter((m) => m !== self && fresh(heard.get(m), now, silenceMs)).length, peers: members.length - 1 };
}
