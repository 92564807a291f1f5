/**
 * The peers' verdict on a holder, pure and on a fake clock: who is silent, whether a majority
 * of the cluster's members agrees that a holder is silent, and which member destroys its
 * session. The quorum counts every known member (the silent holder too), never only the ones
 * that still answer: a lone partitioned peer hears nobody, yet its vote is one of N.
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
  /** Last heartbeat received per peer. A peer never heard is never judged silent. */
  readonly heard: ReadonlyMap<string, PeerHeard>;
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

/** Peers this node heard before and has not heard for `silenceMs`. */
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

/** One verdict per silent holder of a key (none for a holder this node still hears or never heard). */
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
    const last = heard.get(holder);
    if (!last || now - last.at < silenceMs) continue;
    const agreeing = members.filter((m) => m !== self && m !== holder && fresh(heard.get(m), now, silenceMs) && heard.get(m)!.silent.includes(holder));
    const voters = [self, ...agreeing];
    const base = { holder, session, routes: routes.sort(), voters, quorum };
    const silentFor = Math.round(now - last.at);
    if (voters.length < quorum) {
      verdicts.push({ ...base, act: false, reason: `${holder} silent for ${silentFor} ms, but only ${voters.length} of ${members.length} members agree (quorum ${quorum}): not evicting` });
      continue;
    }
    const first = [...voters].sort()[0];
    const act = first === self || now - (input.majoritySince.get(session) ?? now) >= input.backupAfterMs;
    verdicts.push({
      ...base,
      act,
      reason: act
        ? `${holder} silent for ${silentFor} ms and ${voters.length} of ${members.length} members agree (quorum ${quorum}): destroying its session${first === self ? "" : ` (backup for ${first})`}`
        : `${holder} silent for ${silentFor} ms, ${voters.length} of ${members.length} agree: ${first} destroys its session`,
    });
  }
  return verdicts;
}
