import type { Instance } from "@aws-sdk/client-ec2";
import type { Member } from "../consul/client.js";

/** An EC2 instance as discovery sees it. */
export interface PeerInstance {
  readonly instanceId: string;
  readonly state: string;
  readonly privateIp?: string;
  readonly vpcId?: string;
  readonly tags: Readonly<Record<string, string>>;
}

export const ASG_TAG = "aws:autoscaling:groupName";

/** Serf member status: 3 = left. */
const MEMBER_LEFT = 3;

export function toPeerInstance(instance: Instance): PeerInstance | undefined {
  if (!instance.InstanceId) return undefined;
  return {
    instanceId: instance.InstanceId,
    state: instance.State?.Name ?? "unknown",
    ...(instance.PrivateIpAddress ? { privateIp: instance.PrivateIpAddress } : {}),
    ...(instance.VpcId ? { vpcId: instance.VpcId } : {}),
    tags: Object.fromEntries((instance.Tags ?? []).flatMap((t) => (t.Key !== undefined ? [[t.Key, t.Value ?? ""]] : []))),
  };
}

/** The tags a peer must carry: the configured ones, else this instance's own ASG name. */
export function peerTagFilters(configured: Readonly<Record<string, string>> | undefined, self: PeerInstance): Record<string, string> | { error: string } {
  if (configured && Object.keys(configured).length > 0) return { ...configured };
  const group = self.tags[ASG_TAG];
  if (!group) return { error: `instance ${self.instanceId} has no ${ASG_TAG} tag (not in an Auto Scaling group): set discovery.tags to find its peers` };
  return { [ASG_TAG]: group };
}

/** By default a Consul member is an instance when its node name is the instance id. */
export function defaultMemberInstanceId(member: Member): string | undefined {
  return /^i-[0-9a-f]{8,17}$/.test(member.name) ? member.name : undefined;
}

/**
 * Members that might belong to gone instances: mapped to an instance id that is neither this
 * instance nor a running peer, and not already left. EC2 decides which are terminated.
 */
export function forceLeaveCandidates(members: readonly Member[], selfId: string, running: ReadonlySet<string>, memberInstanceId: (m: Member) => string | undefined): Map<string, string> {
  const candidates = new Map<string, string>();
  for (const member of members) {
    if (member.status === MEMBER_LEFT) continue;
    const id = memberInstanceId(member);
    if (!id || id === selfId || running.has(id)) continue;
    candidates.set(member.name, id);
  }
  return candidates;
}
