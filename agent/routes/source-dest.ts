import { DescribeInstanceAttributeCommand, ModifyInstanceAttributeCommand, type EC2Client } from "@aws-sdk/client-ec2";

/** Whether EC2 drops packets not addressed to this instance (must be off for NAT). */
export async function readSourceDestCheck(ec2: EC2Client, instanceId: string, signal?: AbortSignal): Promise<boolean> {
  const out = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: "sourceDestCheck" }), { abortSignal: signal });
  return out.SourceDestCheck?.Value !== false;
}

export async function disableSourceDestCheck(ec2: EC2Client, instanceId: string, signal?: AbortSignal, dryRun = false): Promise<void> {
  await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: instanceId, SourceDestCheck: { Value: false }, ...(dryRun ? { DryRun: true } : {}) }), { abortSignal: signal });
}

/**
 * Proves ec2:ModifyInstanceAttribute without writing: EC2 answers a permitted DryRun request
 * with the error DryRunOperation, a refused one with UnauthorizedOperation (thrown).
 */
export async function proveSourceDestCheckWrite(ec2: EC2Client, instanceId: string, signal?: AbortSignal): Promise<void> {
  try {
    await disableSourceDestCheck(ec2, instanceId, signal, true);
  } catch (err) {
    if ((err as { name?: string }).name === "DryRunOperation") return;
    throw err;
  }
}
