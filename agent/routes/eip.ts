import { AssociateAddressCommand, DescribeAddressesCommand, type EC2Client } from "@aws-sdk/client-ec2";

/** Where an Elastic IP is associated now (undefined fields: not associated). */
export interface EipState {
  readonly allocationId: string;
  readonly publicIp?: string;
  readonly networkInterfaceId?: string;
  /** The private address of that ENI it maps to (a secondary address in same-AZ mode). */
  readonly privateIpAddress?: string;
  readonly instanceId?: string;
}

export async function describeEip(ec2: EC2Client, allocationId: string, signal?: AbortSignal): Promise<EipState> {
  const out = await ec2.send(new DescribeAddressesCommand({ AllocationIds: [allocationId] }), { abortSignal: signal });
  const a = out.Addresses?.[0];
  return {
    allocationId,
    ...(a?.PublicIp ? { publicIp: a.PublicIp } : {}),
    ...(a?.NetworkInterfaceId ? { networkInterfaceId: a.NetworkInterfaceId } : {}),
    ...(a?.PrivateIpAddress ? { privateIpAddress: a.PrivateIpAddress } : {}),
    ...(a?.InstanceId ? { instanceId: a.InstanceId } : {}),
  };
}

/**
 * Moves the Elastic IP to this instance's primary ENI (to `privateIp` on it when given, else its
 * primary address). AllowReassociation takes it from the previous holder in one call (no window
 * where it is associated with nothing).
 */
export async function associateEip(ec2: EC2Client, allocationId: string, eniId: string, signal?: AbortSignal, privateIp?: string): Promise<void> {
  await ec2.send(new AssociateAddressCommand({ AllocationId: allocationId, NetworkInterfaceId: eniId, AllowReassociation: true, ...(privateIp ? { PrivateIpAddress: privateIp } : {}) }), { abortSignal: signal });
}

/** What the holder does with the route's Elastic IP (pure); `privateIp`: the address of our ENI it must map to. */
export function decideEip(state: EipState, myEni: string, force: boolean, privateIp?: string): { associate: boolean; reason: string } {
  if (state.networkInterfaceId === myEni && privateIp && state.privateIpAddress !== privateIp) return { associate: true, reason: `on this ENI but at ${state.privateIpAddress ?? "another address"}, not ${privateIp}` };
  if (state.networkInterfaceId === myEni) return force ? { associate: true, reason: "re-assert" } : { associate: false, reason: "already associated here" };
  if (!state.networkInterfaceId) return { associate: true, reason: "not associated" };
  return { associate: true, reason: `associated with ${state.networkInterfaceId}${state.instanceId ? ` (${state.instanceId})` : ""}` };
}
