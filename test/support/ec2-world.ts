import { Writable } from "node:stream";
import {
  AssociateRouteTableCommand,
  CreateRouteTableCommand,
  CreateSubnetCommand,
  CreateTagsCommand,
  CreateVpcCommand,
  DescribeRouteTablesCommand,
  RunInstancesCommand,
  type EC2Client,
  type Instance,
  type Route,
  type Tag,
} from "@aws-sdk/client-ec2";
import { validateConfig, type Config } from "../../agent/config/index.js";
import type { Identity } from "../../agent/identity/index.js";
import { createLogger, type Logger } from "../../agent/observe/log.js";
import { EMULATOR_AWS } from "./moto.js";

/** Builders for VPC scenarios on moto, through an admin client that bypasses the fault proxy. */

export const AMI = "ami-12c6146b";

const tagList = (tags: Record<string, string>): Tag[] => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));

export async function createVpc(ec2: EC2Client, cidr: string, options: { ipv6?: boolean } = {}): Promise<{ vpcId: string; ipv6Cidr?: string }> {
  const vpc = (await ec2.send(new CreateVpcCommand({ CidrBlock: cidr, ...(options.ipv6 ? { AmazonProvidedIpv6CidrBlock: true } : {}) }))).Vpc!;
  const ipv6Cidr = vpc.Ipv6CidrBlockAssociationSet?.[0]?.Ipv6CidrBlock;
  return { vpcId: vpc.VpcId!, ...(ipv6Cidr ? { ipv6Cidr } : {}) };
}

export async function createSubnet(ec2: EC2Client, vpcId: string, cidr: string, az = `${EMULATOR_AWS.region}a`): Promise<string> {
  return (await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: cidr, AvailabilityZone: az }))).Subnet!.SubnetId!;
}

export async function createTable(ec2: EC2Client, vpcId: string, options: { tags?: Record<string, string>; subnets?: string[] } = {}): Promise<string> {
  const id = (await ec2.send(new CreateRouteTableCommand({ VpcId: vpcId }))).RouteTable!.RouteTableId!;
  if (options.tags) await ec2.send(new CreateTagsCommand({ Resources: [id], Tags: tagList(options.tags) }));
  for (const subnet of options.subnets ?? []) await ec2.send(new AssociateRouteTableCommand({ RouteTableId: id, SubnetId: subnet }));
  return id;
}

export async function mainTableOf(ec2: EC2Client, vpcId: string): Promise<string> {
  const out = await ec2.send(new DescribeRouteTablesCommand({ Filters: [{ Name: "vpc-id", Values: [vpcId] }, { Name: "association.main", Values: ["true"] }] }));
  return out.RouteTables![0]!.RouteTableId!;
}

export async function runInstance(ec2: EC2Client, subnetId: string, tags: Record<string, string> = {}): Promise<Instance> {
  const out = await ec2.send(
    new RunInstancesCommand({
      ImageId: AMI,
      MinCount: 1,
      MaxCount: 1,
      SubnetId: subnetId,
      ...(Object.keys(tags).length ? { TagSpecifications: [{ ResourceType: "instance", Tags: tagList(tags) }] } : {}),
    }),
  );
  return out.Instances![0]!;
}

/** What IMDS would tell this instance. */
export function identityOf(instance: Instance): Identity {
  const eni = instance.NetworkInterfaces?.find((n) => n.Attachment?.DeviceIndex === 0) ?? instance.NetworkInterfaces?.[0];
  const az = instance.Placement?.AvailabilityZone ?? `${EMULATOR_AWS.region}a`;
  return {
    instanceId: instance.InstanceId!,
    region: EMULATOR_AWS.region,
    az,
    vpcId: instance.VpcId!,
    subnetId: instance.SubnetId!,
    eniId: eni!.NetworkInterfaceId!,
    mac: eni?.MacAddress ?? "02:00:00:00:00:01",
    privateIp: instance.PrivateIpAddress!,
  };
}

/** The route to `destination` in a table, read directly from moto. */
export async function readRoute(ec2: EC2Client, tableId: string, destination: string): Promise<Route | undefined> {
  const out = await ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [tableId] }));
  return out.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === destination || r.DestinationIpv6CidrBlock === destination);
}

/** A validated Config around the given routes. */
export function testConfig(routes: unknown[], extra: Record<string, unknown> = {}): Config {
  return validateConfig({ cluster: "test", sourceDestCheck: "ignore", ...extra, routes }, "test-config");
}

/** A pino logger whose JSON lines are kept for assertions. */
export function memoryLogger(level = "debug"): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger(level, { destination }), lines };
}
