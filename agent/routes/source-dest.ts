import { DescribeInstanceAttributeCommand, ModifyInstanceAttributeCommand, type EC2Client } from "@aws-sdk/client-ec2";

/** Whether EC2 drops packets not addressed to this instance (must be off for NAT). */
export async function readSourceDestCheck(ec2: EC2Client, instanceId: string, signal?: AbortSignal): Promise<boolean> {
  const out = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: "sourceDestCheck" }), { abortSignal: signal });
  return out.SourceDestCheck?.Value !== false;
}

export async function disableSourceDestCheck(ec2: EC2Client, instanceId: string, signal?: AbortSignal): Promise<void> {
  await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: instanceId, SourceDestCheck: { Value: false } }), { abortSignal: signal });
}
