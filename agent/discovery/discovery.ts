import { DescribeInstancesCommand, type EC2Client, type Filter } from "@aws-sdk/client-ec2";
import { systemClock } from "../clock.js";
import { withRetries, type RetryPolicy } from "../aws/retry.js";
import { ConsulAclError } from "../consul/errors.js";
import type { ConsulApi, Member } from "../consul/index.js";
import { EXIT, ExitError } from "../exit-codes.js";
import type { Identity } from "../identity/index.js";
import type { Logger } from "../observe/log.js";
import { processMetrics } from "../observe/metrics.js";
import { defaultMemberInstanceId, forceLeaveCandidates, peerTagFilters, toPeerInstance, type PeerInstance } from "./peers.js";

export interface PeerDiscoveryDeps {
  ec2: EC2Client;
  consul: Pick<ConsulApi, "join" | "forceLeave" | "members">;
  identity: Identity;
  config: { discovery: { tags?: Readonly<Record<string, string>>; interval: number } };
  log: Logger;
  /** The address to join a peer at; default its private IP. Tests map it to a loopback port. */
  joinAddress?: (peer: PeerInstance) => string | undefined;
  /** Which instance a Consul member runs on; default: the node name when it is an instance id. */
  memberInstanceId?: (member: Member) => string | undefined;
}

export interface DiscoveryResult {
  /** Running instances of the same group and VPC, this one excluded. */
  readonly peers: readonly PeerInstance[];
  readonly joined: readonly string[];
  readonly joinFailures: readonly { instanceId: string; address: string; error: string }[];
  /** Consul node names force-left because EC2 reports their instance terminated. */
  readonly forceLeft: readonly string[];
}

const READ_POLICY: RetryPolicy = { attempts: 3, deadlineMs: 10_000 };

/**
 * Finds this instance's peers in EC2 (same tags, running, same VPC) and joins them through
 * the local Consul agent, so a new instance or a healed partition rejoins by itself. A
 * member whose instance EC2 reports terminated is force-left (unless the token may not: then the
 * Consul servers do it, and it is said once). Node names are expected to be
 * instance ids (or `memberInstanceId` maps them).
 */
export class PeerDiscovery {
  private tagFilters: Record<string, string> | undefined;
  /** Members whose force-leave the token may not make (logged once each). */
  private readonly notForceLeft = new Set<string>();
  private readonly joinAddress: (peer: PeerInstance) => string | undefined;
  private readonly memberInstanceId: (member: Member) => string | undefined;

  constructor(private readonly deps: PeerDiscoveryDeps) {
    this.joinAddress = deps.joinAddress ?? ((peer) => peer.privateIp);
    this.memberInstanceId = deps.memberInstanceId ?? defaultMemberInstanceId;
  }

  async runOnce(signal?: AbortSignal): Promise<DiscoveryResult> {
    const { identity, log, consul } = this.deps;
    const started = performance.now();
    const tags = await this.peerTags(signal);
    const filters: Filter[] = [
      ...Object.entries(tags).map(([key, value]) => ({ Name: `tag:${key}`, Values: [value] })),
      { Name: "instance-state-name", Values: ["running"] },
      { Name: "vpc-id", Values: [identity.vpcId] },
    ];
    const running = await this.describe(filters, "running peers", signal);
    const peers = running.filter((p) => p.instanceId !== identity.instanceId);

    const joined: string[] = [];
    const joinFailures: { instanceId: string; address: string; error: string }[] = [];
    for (const peer of peers) {
      const address = this.joinAddress(peer);
      if (!address) continue;
      try {
        await consul.join(address);
        joined.push(peer.instanceId);
      } catch (err) {
        joinFailures.push({ instanceId: peer.instanceId, address, error: (err as Error).message });
        processMetrics.recordError("discovery");
        log.warn({ peer: peer.instanceId, address, err: (err as Error).message }, "consul join failed");
      }
    }

    const members = await consul.members();
    const candidates = forceLeaveCandidates(members, identity.instanceId, new Set(running.map((p) => p.instanceId)), this.memberInstanceId);
    const forceLeft: string[] = [];
    if (candidates.size > 0) {
      const states = await this.describe([{ Name: "instance-id", Values: [...new Set(candidates.values())] }], "member instances", signal);
      const terminated = new Set(states.filter((s) => s.state === "terminated").map((s) => s.instanceId));
      for (const [node, instanceId] of candidates) {
        if (!terminated.has(instanceId)) continue;
        try {
          await consul.forceLeave(node);
        } catch (err) {
          // The documented policy has no operator right: the stack's servers force-leave
          // terminated NAT nodes (scripts/node-credentials.sh). Said once per member.
          if (!(err instanceof ConsulAclError)) throw err;
          if (!this.notForceLeft.has(node)) {
            this.notForceLeft.add(node);
            log.info({ node, instance: instanceId, reason: "the Consul token has no operator:write; the Consul servers remove it" }, "consul member not force-left");
          }
          continue;
        }
        forceLeft.push(node);
        log.info({ node, instance: instanceId, reason: "instance terminated" }, "consul member force-left");
      }
    }
    log.info({ peers: peers.map((p) => p.instanceId), joined: joined.length, failed: joinFailures.length, forceLeft, ms: Math.round(performance.now() - started) }, "peer discovery");
    return { peers, joined, joinFailures, forceLeft };
  }

  /**
   * Runs discovery now and then every `discovery.interval` until `signal` aborts. A missing
   * permission or tag ends the loop (ExitError); anything else is logged and retried next time.
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.runOnce(AbortSignal.any([signal, AbortSignal.timeout(this.deps.config.discovery.interval)]));
      } catch (err) {
        if (err instanceof ExitError) throw err;
        if (signal.aborted) return;
        processMetrics.recordError("discovery");
        this.deps.log.warn({ err: (err as Error).message }, "peer discovery failed; retrying next interval");
      }
      try {
        await systemClock.sleep(this.deps.config.discovery.interval, signal);
      } catch {
        return;
      }
    }
  }

  /**
   * The tag filters peers are found by (this instance's ASG tag unless configured). Called at
   * start as a preflight: a missing permission or tag stops the agent before it writes.
   */
  async peerTags(signal?: AbortSignal): Promise<Record<string, string>> {
    if (this.tagFilters) return this.tagFilters;
    const { identity, config } = this.deps;
    let self: PeerInstance | undefined;
    if (!config.discovery.tags || Object.keys(config.discovery.tags).length === 0) {
      self = (await this.describe([{ Name: "instance-id", Values: [identity.instanceId] }], "this instance", signal))[0];
      if (!self) throw new ExitError(`ec2:DescribeInstances does not know this instance ${identity.instanceId}`, EXIT.aws);
    }
    const filters = peerTagFilters(config.discovery.tags, self ?? { instanceId: identity.instanceId, state: "running", tags: {} });
    if ("error" in filters) throw new ExitError(filters.error, EXIT.config);
    this.tagFilters = filters;
    return filters;
  }

  private async describe(filters: Filter[], what: string, signal?: AbortSignal): Promise<PeerInstance[]> {
    return withRetries("ec2:DescribeInstances", what, READ_POLICY, async (s) => {
      const found: PeerInstance[] = [];
      let nextToken: string | undefined;
      do {
        const page = await this.deps.ec2.send(new DescribeInstancesCommand({ Filters: filters, ...(nextToken ? { NextToken: nextToken } : {}) }), { abortSignal: s });
        for (const instance of (page.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
          const peer = toPeerInstance(instance);
          if (peer) found.push(peer);
        }
        nextToken = page.NextToken;
      } while (nextToken);
      return found;
    }, signal ? { signal } : {});
  }
}
