import { DescribeAddressesCommand, DescribeInstancesCommand, DescribeNatGatewaysCommand, DescribeNetworkInterfacesCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { classifyAwsError } from "../aws/errors.js";

/** One problem of a route's Elastic IP or fallback, at its config path. */
export interface TargetProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

interface RouteTargets {
  readonly name: string;
  readonly eip?: string | undefined;
  readonly fallback?: { readonly natGateway: string } | { readonly networkInterface: string } | undefined;
}

/** The tag the stack puts on every NAT instance of a cluster (and the agents' IAM conditions read). */
export const CLUSTER_TAG = "routeleader:cluster";

const notFound = (err: unknown) => /NotFound|Malformed/.test(classifyAwsError(err).code);

/** The result of an EC2 read, or undefined when EC2 says the id does not exist (other errors throw). */
async function unlessNotFound<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    if (notFound(err)) return undefined;
    throw err;
  }
}

/**
 * Reads (never writes) what the routes' Elastic IPs and fallbacks name, and says what would go
 * wrong: an EIP that does not exist, or that is associated with something outside the cluster
 * (taking it would cut that host's public address: an instance not tagged routeleader:cluster =
 * the cluster, or a bare interface such as a NAT gateway's); a fallback that does not exist, is
 * not usable, or is in another VPC than this instance's. AWS errors other than "not found" are thrown.
 */
export async function checkEgressTargets(ec2: EC2Client, cluster: string, vpcId: string, routes: readonly RouteTargets[]): Promise<TargetProblem[]> {
  const problems: TargetProblem[] = [];
  for (const [i, route] of routes.entries()) {
    if (route.eip) problems.push(...(await checkEip(ec2, cluster, route.eip, ["routes", i, "eip"])));
    if (route.fallback && "natGateway" in route.fallback) problems.push(...(await checkNatGateway(ec2, vpcId, route.fallback.natGateway, ["routes", i, "fallback", "natGateway"])));
    if (route.fallback && "networkInterface" in route.fallback) problems.push(...(await checkInterface(ec2, vpcId, route.fallback.networkInterface, ["routes", i, "fallback", "networkInterface"])));
  }
  return problems;
}

async function checkEip(ec2: EC2Client, cluster: string, allocationId: string, path: TargetProblem["path"]): Promise<TargetProblem[]> {
  const address = (await unlessNotFound(() => ec2.send(new DescribeAddressesCommand({ AllocationIds: [allocationId] }))))?.Addresses?.[0];
  if (!address) return [{ path, message: `Elastic IP ${allocationId} does not exist in this account and region (ec2:DescribeAddresses: ${allocationId} not found)` }];
  const ip = address.PublicIp ? ` (${address.PublicIp})` : "";
  if (address.InstanceId) {
    const instance = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [address.InstanceId] }))).Reservations?.[0]?.Instances?.[0];
    const tag = instance?.Tags?.find((t) => t.Key === CLUSTER_TAG)?.Value;
    if (tag === cluster) return [];
    return [{ path, message: `Elastic IP ${allocationId}${ip} is associated with ${address.InstanceId}, which is not in cluster ${cluster} (its tag ${CLUSTER_TAG} is ${tag === undefined ? "missing" : `"${tag}"`}): a holder would take the address from it; disassociate it first` }];
  }
  if (address.NetworkInterfaceId || address.AssociationId) {
    return [{ path, message: `Elastic IP ${allocationId}${ip} is associated with ${address.NetworkInterfaceId ?? address.AssociationId}, an interface of no instance (a NAT gateway or another service): a holder would take the address from it; use another EIP` }];
  }
  return [];
}

async function checkNatGateway(ec2: EC2Client, vpcId: string, id: string, path: TargetProblem["path"]): Promise<TargetProblem[]> {
  const gateway = (await unlessNotFound(() => ec2.send(new DescribeNatGatewaysCommand({ NatGatewayIds: [id] }))))?.NatGateways?.[0];
  if (!gateway) return [{ path, message: `NAT gateway ${id} does not exist in this account and region (ec2:DescribeNatGateways: not found)` }];
  if (gateway.VpcId !== vpcId) return [{ path, message: `NAT gateway ${id} is in ${gateway.VpcId ?? "no VPC"}, not in this instance's VPC ${vpcId}: EC2 refuses a route to it` }];
  if (gateway.State === "deleting" || gateway.State === "deleted" || gateway.State === "failed") return [{ path, message: `NAT gateway ${id} is ${gateway.State}: nothing to fall back to` }];
  return [];
}

async function checkInterface(ec2: EC2Client, vpcId: string, id: string, path: TargetProblem["path"]): Promise<TargetProblem[]> {
  const eni = (await unlessNotFound(() => ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [id] }))))?.NetworkInterfaces?.[0];
  if (!eni) return [{ path, message: `network interface ${id} does not exist in this account and region (ec2:DescribeNetworkInterfaces: not found)` }];
  if (eni.VpcId !== vpcId) return [{ path, message: `network interface ${id} is in ${eni.VpcId ?? "no VPC"}, not in this instance's VPC ${vpcId}: EC2 refuses a route to it` }];
  return [];
}
