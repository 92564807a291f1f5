import { createSocket, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import type { Clock } from "../clock.js";
import type { Config } from "../config/index.js";
import { runBlockingWatch } from "../consul/blocking.js";
import type { ConsulApi, KvEntry, ServiceInstance } from "../consul/index.js";
import { parseHolder, routeOfKey } from "../election/holder.js";
import type { Logger } from "../observe/log.js";
import { cutOffFromMajority, judgeHolders, silentPeers, type HeldKey, type PeerCutOff, type PeerHeard, type Verdict } from "./verdict.js";
import { decodeHeartbeat, encodeHeartbeat, formatPeerAddress, parsePeerAddress } from "./wire.js";

export interface PeerHeartbeatDeps {
  api: Pick<ConsulApi, "healthService" | "watchHealthService" | "destroySession">;
  config: Config;
  instanceId: string;
  /** The address the socket binds to and peers send to. */
  address: string;
  clock: Clock;
  log: Logger;
}

/** How long one blocking read of the member list (every instance of the cluster's service, with its heartbeat address) waits for a change. */
const MEMBERS_WAIT_MS = 30_000;
/** Timeout of the immediate read an unknown sender triggers. */
const MEMBERS_REFRESH_TIMEOUT_MS = 1000;
const DESTROY_TIMEOUT_MS = 2000;
/** A heartbeat from an unknown sender re-reads the member list at most this often. */
const MEMBERS_REFRESH_MS = 250;

/** The service meta key that advertises a member's heartbeat address. */
export const PEER_META = "peer";

/**
 * Heartbeats between the members of a cluster, and the I/O around the pure verdict: a UDP
 * socket on the member's own address, the member list from Consul, the held keys from the
 * election's watch, and the session destroy when this node is the one to act.
 */
export class PeerHeartbeat {
  private socket: Socket | undefined;
  /** instanceId → heartbeat address ("" for a member that advertises none: it still counts in the quorum). */
  private members = new Map<string, string>();
  private readonly heard = new Map<string, PeerHeard>();
  /** Members with a heartbeat address → since when this node has expected their heartbeats (listed at that address). */
  private readonly expected = new Map<string, number>();
  private keys: HeldKey[] = [];
  private readonly destroyed = new Set<string>();
  private readonly said = new Map<string, string>();
  private readonly majoritySince = new Map<string, number>();
  private seq = 0;
  private refreshing: Promise<void> | undefined;
  private lastRefresh = -Infinity;
  private silent: string[] = [];
  private cutOffEpisode: PeerCutOff | undefined;

  constructor(private readonly deps: PeerHeartbeatDeps) {}

  get advertised(): string {
    return formatPeerAddress(this.deps.address, this.deps.config.peers.port);
  }

  /** The locked route keys, from the election's watch of the routes prefix. */
  observe(entries: readonly KvEntry[]): void {
    const { cluster } = this.deps.config;
    this.keys = entries.flatMap((e) => {
      const route = routeOfKey(cluster, e.key);
      const holder = route && e.session ? parseHolder(e.value)?.instanceId : undefined;
      return route && holder && e.session ? [{ route, holder, session: e.session }] : [];
    });
    const live = new Set(this.keys.map((k) => k.session));
    for (const session of [...this.destroyed, ...this.said.keys()]) if (!live.has(session)) (this.destroyed.delete(session), this.said.delete(session));
  }

  async start(): Promise<void> {
    const { address, config, log } = this.deps;
    const socket = createSocket(isIPv6(address) ? "udp6" : "udp4");
    socket.on("message", (data, from) => this.receive(data, from.address));
    socket.on("error", (err) => log.warn({ step: "peers", err: err.message }, "peer heartbeat socket error"));
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(config.peers.port, address, () => (socket.off("error", reject), resolve()));
    });
    this.socket = socket;
    log.info({ step: "peers", listen: this.advertised, intervalMs: config.peers.interval, misses: config.peers.misses }, "peer heartbeats listening");
  }

  async run(signal: AbortSignal): Promise<void> {
    const { clock, config } = this.deps;
    void this.watchMembers(signal);
    while (!signal.aborted) {
      this.tick();
      await clock.sleep(config.peers.interval, signal).catch(() => undefined);
    }
  }

  /** The latest episode of this node being cut off from a majority of its peers (see cutOffFromMajority). */
  cutOff(): PeerCutOff | undefined {
    return this.cutOffEpisode;
  }

  stop(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  /**
   * The member list, from a blocking query on the routeleader service: a join or a leave
   * answers at once, a quiet cluster costs one request per MEMBERS_WAIT_MS. Cut off from
   * Consul, the last list stands (a shorter list could only lower the quorum).
   */
  private watchMembers(signal: AbortSignal): Promise<void> {
    const { api, config, clock } = this.deps;
    return runBlockingWatch(
      {
        clock,
        read: (index, readSignal) => api.watchHealthService(config.consul.serviceName, index, MEMBERS_WAIT_MS, readSignal),
        onAnswer: (instances) => this.applyMembers(instances),
      },
      signal,
    );
  }

  /**
   * A heartbeat from a sender not (yet) in the member list at that address: read the list now
   * rather than wait for the watch, so a holder hears of a member that just joined within a
   * round trip and its heartbeats reach it (at most one read per MEMBERS_REFRESH_MS, whoever sends).
   */
  private refreshSoon(): void {
    const { api, config, clock } = this.deps;
    const now = clock.now();
    if (this.refreshing || now - this.lastRefresh < MEMBERS_REFRESH_MS) return;
    this.lastRefresh = now;
    this.refreshing = api
      .healthService(config.consul.serviceName, { timeoutMs: MEMBERS_REFRESH_TIMEOUT_MS })
      .then((instances) => this.applyMembers(instances))
      .catch(() => undefined)
      .finally(() => (this.refreshing = undefined));
  }

  private applyMembers(instances: readonly ServiceInstance[]): void {
    const { config, clock, log } = this.deps;
    const next = new Map<string, string>();
    for (const i of instances) if (i.meta.cluster === config.cluster && i.meta.instanceId) next.set(i.meta.instanceId, i.meta[PEER_META] ?? "");
    if ([...next.keys()].sort().join() !== [...this.members.keys()].sort().join()) log.info({ step: "peers", members: [...next.keys()].sort() }, `peer members: ${next.size}`);
    const now = clock.now();
    for (const [id, address] of next) {
      if (!parsePeerAddress(address)) this.expected.delete(id);
      else if (this.members.get(id) !== address || !this.expected.has(id)) this.expected.set(id, now);
    }
    for (const id of [...this.expected.keys()]) if (!next.has(id)) this.expected.delete(id);
    this.members = next;
  }

  private receive(data: Buffer, fromAddress: string): void {
    const hb = decodeHeartbeat(data);
    if (!hb || hb.cluster !== this.deps.config.cluster || hb.from === this.deps.instanceId) return;
    // Only a member, from the address it advertises in Consul.
    if (parsePeerAddress(this.members.get(hb.from))?.host !== fromAddress.replace(/^::ffff:/, "")) return this.refreshSoon();
    const now = this.deps.clock.now();
    const before = this.heard.get(hb.from);
    const silenceMs = this.deps.config.peers.interval * this.deps.config.peers.misses;
    if (!before || now - before.at >= silenceMs) this.deps.log.info({ step: "peers", peer: hb.from, silentMs: before ? Math.round(now - before.at) : null }, before ? `peer ${hb.from} heard again` : `peer ${hb.from} heard`);
    this.heard.set(hb.from, { at: now, silent: hb.silent });
    this.judge();
  }

  private tick(): void {
    const { config, instanceId, clock } = this.deps;
    const silent = silentPeers(instanceId, this.heard, clock.now(), config.peers.interval * config.peers.misses);
    if (silent.join() !== this.silent.join()) {
      const lost = silent.filter((id) => !this.silent.includes(id));
      if (lost.length) this.deps.log.info({ step: "peers", silent, members: this.members.size }, `peer${lost.length > 1 ? "s" : ""} ${lost.join(", ")} silent for ${config.peers.interval * config.peers.misses} ms`);
      this.silent = silent;
    }
    this.noteCutOff();
    const datagram = encodeHeartbeat({ cluster: config.cluster, from: instanceId, seq: ++this.seq, silent });
    for (const [id, address] of this.members) {
      const to = id === instanceId ? undefined : parsePeerAddress(address);
      if (to) this.socket?.send(datagram, to.port, to.host);
    }
    this.judge();
  }

  private noteCutOff(): void {
    const { config, instanceId, clock, log } = this.deps;
    const now = clock.now();
    const cut = cutOffFromMajority({ self: instanceId, members: [...this.members.keys()], heard: this.heard, expectedSince: this.expected, now, silenceMs: config.peers.interval * config.peers.misses });
    const open = this.cutOffEpisode && this.cutOffEpisode.until === undefined ? this.cutOffEpisode : undefined;
    if (cut && !open) {
      this.cutOffEpisode = { since: now, ...cut };
      log.warn({ step: "peers", heard: cut.heard, peers: cut.peers }, `cut off from a majority of the members (hears ${cut.heard} of ${cut.peers} peers): the keys this node holds are unconfirmed`);
    } else if (!cut && open) {
      this.cutOffEpisode = { ...open, until: now };
      log.info({ step: "peers", ms: Math.round(now - open.since) }, `hears a majority of the members again after ${Math.round(now - open.since)} ms`);
    }
  }

  private judge(): void {
    const { config, instanceId, clock } = this.deps;
    const silenceMs = config.peers.interval * config.peers.misses;
    const now = clock.now();
    const verdicts = judgeHolders({ self: instanceId, members: [...this.members.keys()], heard: this.heard, expectedSince: this.expected, keys: this.keys, now, silenceMs, backupAfterMs: silenceMs, destroyed: this.destroyed, majoritySince: this.majoritySince });
    for (const session of this.majoritySince.keys()) if (!verdicts.some((v) => v.session === session && v.voters.length >= v.quorum)) this.majoritySince.delete(session);
    for (const v of verdicts) {
      if (v.voters.length >= v.quorum && !this.majoritySince.has(v.session)) this.majoritySince.set(v.session, now);
      // Logged when the verdict changes, not on every tick (the reason quotes a growing silence).
      const gist = `${v.act} ${v.voters.join(",")} ${v.quorum}`;
      if (this.said.get(v.session) !== gist) {
        this.said.set(v.session, gist);
        if (!v.act) this.deps.log.info({ step: "peers", route: v.routes.join(","), holder: v.holder, session: v.session, voters: v.voters, quorum: v.quorum, act: false }, v.reason);
      }
      if (v.act) void this.destroy(v);
    }
  }

  private async destroy(v: Verdict): Promise<void> {
    const { api, clock, log } = this.deps;
    this.destroyed.add(v.session);
    const started = clock.now();
    const fields = { step: "peers", route: v.routes.join(","), holder: v.holder, session: v.session, voters: v.voters, quorum: v.quorum, act: true };
    try {
      await api.destroySession(v.session, DESTROY_TIMEOUT_MS);
      log.warn({ ...fields, ms: Math.round(clock.now() - started) }, v.reason);
    } catch (err) {
      // Tried again on the next tick while the verdict stands.
      this.destroyed.delete(v.session);
      log.warn({ ...fields, err: (err as Error).message, ms: Math.round(clock.now() - started) }, `could not destroy ${v.holder}'s session: ${(err as Error).message}`);
    }
  }
}
