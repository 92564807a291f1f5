import { CreateRouteCommand, CreateRouteTableCommand, CreateSubnetCommand, CreateVpcCommand, CreateInternetGatewayCommand, AttachInternetGatewayCommand, DescribeRouteTablesCommand, EC2Client, ReplaceRouteCommand, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";

describe("EC2 routes on moto server", () => {
  let moto: StartedMoto;
  let ec2: EC2Client;

  beforeAll(async () => {
    moto = await startMoto();
    ec2 = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  });
  afterAll(async () => {
    ec2?.destroy();
    await moto?.stop();
  });

  it("replaces the default route with an instance target and reads it back", async () => {
    await moto.reset();
    const vpc = (await ec2.send(new CreateVpcCommand({ CidrBlock: "10.20.0.0/16" }))).Vpc!;
    const subnet = (await ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.20.1.0/24", AvailabilityZone: "us-east-1a" }))).Subnet!;
    const table = (await ec2.send(new CreateRouteTableCommand({ VpcId: vpc.VpcId }))).RouteTable!;
    const igw = (await ec2.send(new CreateInternetGatewayCommand({}))).InternetGateway!;
    await ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: igw.InternetGatewayId, VpcId: vpc.VpcId }));
    await ec2.send(new CreateRouteCommand({ RouteTableId: table.RouteTableId, DestinationCidrBlock: "0.0.0.0/0", GatewayId: igw.InternetGatewayId }));
    const instance = (await ec2.send(new RunInstancesCommand({ ImageId: "ami-12c6146b", MinCount: 1, MaxCount: 1, SubnetId: subnet.SubnetId }))).Instances![0]!;

    await ec2.send(new ReplaceRouteCommand({ RouteTableId: table.RouteTableId, DestinationCidrBlock: "0.0.0.0/0", InstanceId: instance.InstanceId }));

    const read = await ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [table.RouteTableId!] }));
    const route = read.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === "0.0.0.0/0");
    expect(route?.InstanceId).toBe(instance.InstanceId);
    expect(route?.GatewayId).toBeUndefined();
  });

  it("reset wipes the emulator's state", async () => {
    const vpc = (await ec2.send(new CreateVpcCommand({ CidrBlock: "10.30.0.0/16" }))).Vpc!;
    await moto.reset();
    const read = await ec2.send(new DescribeRouteTablesCommand({ Filters: [{ Name: "vpc-id", Values: [vpc.VpcId!] }] }));
    expect(read.RouteTables).toEqual([]);
  });
});
