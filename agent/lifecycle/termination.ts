import { CompleteLifecycleActionCommand, type AutoScalingClient } from "@aws-sdk/client-auto-scaling";
import type { Clock } from "../clock.js";
import { classifyAwsError, describeAwsFailure } from "../aws/index.js";
import type { InstanceMetadata } from "../identity/index.js";
import type { Logger } from "../observe/log.js";
import { processMetrics } from "../observe/metrics.js";

export type TerminationNotice = { reason: "asg-terminating"; state: string } | { reason: "spot-interruption"; action: string };

/**
 * Reads the two IMDS signals of a coming termination: the Auto Scaling target lifecycle state
 * (Terminated, or a Terminating state, once scale-in picks this instance) and the spot
 * interruption notice (spot/instance-action exists only once one is scheduled).
 */
export function terminationNotice(lifecycleState: string | undefined, spotAction: string | undefined): TerminationNotice | undefined {
  if (lifecycleState && /^Terminat/.test(lifecycleState)) return { reason: "asg-terminating", state: lifecycleState };
  if (spotAction) {
    try {
      const parsed = JSON.parse(spotAction) as { action?: string };
      if (parsed.action === "terminate" || parsed.action === "stop" || parsed.action === "hibernate") return { reason: "spot-interruption", action: parsed.action };
    } catch {
      return { reason: "spot-interruption", action: "unknown" };
    }
  }
  return undefined;
}

/** Polls IMDS until a termination notice appears (resolves with it) or the signal aborts. */
export async function watchForTermination(deps: { imds: InstanceMetadata; clock: Clock; log: Logger; intervalMs: number }, signal: AbortSignal): Promise<TerminationNotice | undefined> {
  const { imds, clock, log, intervalMs } = deps;
  let warned = false;
  while (!signal.aborted) {
    try {
      const [state, spot] = await Promise.all([imds.lifecycleState(), imds.spotInstanceAction()]);
      const notice = terminationNotice(state, spot);
      if (notice) return notice;
      warned = false;
    } catch (err) {
      processMetrics.recordError("lifecycle");
      if (!warned) log.warn({ err: (err as Error).message }, "termination watch: instance metadata unavailable");
      warned = true;
    }
    await clock.sleep(intervalMs, signal).catch(() => undefined);
  }
  return undefined;
}

/** Lets Auto Scaling go on with the termination once the routes are handed over. */
export async function completeLifecycleAction(deps: { autoscaling: AutoScalingClient; log: Logger }, args: { group: string; hook: string; instanceId: string }): Promise<void> {
  const started = Date.now();
  try {
    await deps.autoscaling.send(
      new CompleteLifecycleActionCommand({ AutoScalingGroupName: args.group, LifecycleHookName: args.hook, InstanceId: args.instanceId, LifecycleActionResult: "CONTINUE" }),
      { abortSignal: AbortSignal.timeout(5000) },
    );
    deps.log.info({ step: "lifecycle", group: args.group, hook: args.hook, ms: Date.now() - started }, "lifecycle action completed (CONTINUE)");
  } catch (err) {
    processMetrics.recordError("lifecycle");
    deps.log.error({ step: "lifecycle", group: args.group, hook: args.hook, err: describeAwsFailure(classifyAwsError(err), "autoscaling:CompleteLifecycleAction", args.group) }, "CompleteLifecycleAction failed; Auto Scaling continues after the hook's heartbeat timeout");
  }
}
