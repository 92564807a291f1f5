import { AssignPrivateIpAddressesCommand, DescribeNetworkInterfacesCommand, type EC2Client } from "@aws-sdk/client-ec2";

/**
 * Same-AZ mode: the route's secondary private IP follows the holder. The NATs SNAT to it, so a
 * connection's public 5-tuple does not change when a peer in the same subnet takes over.
 */

/** The private IPv4 addresses of an ENI now. */
export async function privateIpsOf(ec2: EC2Client, eniId: string, signal?: AbortSignal): Promise<string[]> {
  const out = await ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [eniId] }), { abortSignal: signal });
  return (out.NetworkInterfaces?.[0]?.PrivateIpAddresses ?? []).flatMap((a) => (a.PrivateIpAddress ? [a.PrivateIpAddress] : []));
}

/** Assigns the address to this ENI, taking it from the ENI that has it (AllowReassignment). */
export async function assignSecondaryIp(ec2: EC2Client, eniId: string, privateIp: string, signal?: AbortSignal): Promise<void> {
  await ec2.send(new AssignPrivateIpAddressesCommand({ NetworkInterfaceId: eniId, PrivateIpAddresses: [privateIp], AllowReassignment: true }), { abortSignal: signal });
}

/** Whether this holder handles the secondary IP at all, and whether it must assign it (pure). */
export function decideSecondaryIp(
  sameAz: { subnet: string; privateIp: string },
  mySubnet: string,
  assigned: readonly string[] | undefined,
  force: boolean,
): { action: "assign" | "none" | "other-subnet"; reason: string } {
  if (sameAz.subnet !== mySubnet) return { action: "other-subnet", reason: `this holder is in ${mySubnet}, the pair in ${sameAz.subnet}: the EIP moves to its primary address, connections are not kept` };
  if (!assigned?.includes(sameAz.privateIp)) return { action: "assign", reason: "not on this ENI" };
  return force ? { action: "assign", reason: "re-assert" } : { action: "none", reason: "already on this ENI" };
}
