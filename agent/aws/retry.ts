import { systemClock } from "../clock.js";
import { AwsCallError, classifyAwsError, describeAwsFailure, isFatal, toAwsError, type AwsFailure } from "./errors.js";

/** How hard to try one AWS call. */
export interface RetryPolicy {
  /**
   * Attempts whose outcome is unknown (5xx, socket error, timeout): each may have executed,
   * so this bounds the late writes. Throttled attempts were refused unexecuted and do not
   * count; only the deadline bounds them.
   */
  readonly attempts: number;
  /** Everything (attempts and backoff) ends by then; the running request is aborted. */
  readonly deadlineMs: number;
  /** Full-jitter backoff base after throttling (default 100 ms). */
  readonly throttleBaseMs?: number;
  /** Full-jitter backoff base after a transient failure (default 50 ms). */
  readonly transientBaseMs?: number;
  /** Upper bound of one backoff (default 1000 ms). */
  readonly capMs?: number;
}

export interface RetryHooks {
  /** The caller's own cancellation (leadership lost, shutdown). */
  signal?: AbortSignal;
  /** Asked right before every attempt; false → GateClosedError, nothing is sent. */
  proceed?: () => Promise<boolean>;
  onRetry?: (failure: AwsFailure, delayMs: number, attempt: number) => void;
  random?: () => number;
}

/** `proceed` said no: the call was not sent. */
export class GateClosedError extends Error {
  constructor(readonly action: string) {
    super(`${action}: not sent, the write gate is closed`);
    this.name = "GateClosedError";
  }
}

/** Full jitter: random × min(base × 2^n, cap) (the AWS Architecture Blog's recommendation). */
export function backoffMs(failure: AwsFailure, retryIndex: number, policy: RetryPolicy, random: () => number): number {
  const base = failure.kind === "throttled" ? (policy.throttleBaseMs ?? 100) : (policy.transientBaseMs ?? 50);
  return Math.floor(random() * Math.min(base * 2 ** retryIndex, policy.capMs ?? 1000));
}

/**
 * Runs `call` until it succeeds, a fatal error (ExitError), the attempt budget or the
 * deadline. `call` gets a signal that aborts at the deadline: pass it to `client.send`.
 * Throws ExitError (fatal), GateClosedError, or AwsCallError.
 */
export async function withRetries<T>(action: string, subject: string, policy: RetryPolicy, call: (signal: AbortSignal) => Promise<T>, hooks: RetryHooks = {}): Promise<T> {
  const deadline = AbortSignal.timeout(policy.deadlineMs);
  const signal = hooks.signal ? AbortSignal.any([deadline, hooks.signal]) : deadline;
  const random = hooks.random ?? Math.random;
  let unknownOutcomes = 0;
  for (let retry = 0; ; retry++) {
    if (hooks.proceed && !(await hooks.proceed())) throw new GateClosedError(action);
    if (signal.aborted) throw abortedError(action, subject, policy, hooks.signal);
    try {
      return await call(signal);
    } catch (err) {
      const failure = classifyAwsError(err);
      if (failure.kind === "aborted" || signal.aborted) throw abortedError(action, subject, policy, hooks.signal, err);
      if (isFatal(failure)) throw toAwsError(err, action, subject);
      if (failure.kind === "transient") unknownOutcomes++;
      if (unknownOutcomes >= policy.attempts) {
        throw new AwsCallError(`${describeAwsFailure(failure, action, subject)} (gave up after ${retry + 1} attempts)`, failure, action, { cause: err });
      }
      const delay = backoffMs(failure, retry, policy, random);
      hooks.onRetry?.(failure, delay, retry + 1);
      try {
        await systemClock.sleep(delay, signal);
      } catch {
        throw abortedError(action, subject, policy, hooks.signal, err);
      }
    }
  }
}

function abortedError(action: string, subject: string, policy: RetryPolicy, callerSignal: AbortSignal | undefined, cause?: unknown): AwsCallError {
  const byCaller = callerSignal?.aborted ?? false;
  const why = byCaller ? "cancelled by the caller" : `no success within ${policy.deadlineMs} ms`;
  const last = cause ? classifyAwsError(cause) : undefined;
  const detail = last && last.kind !== "aborted" ? `; last error ${last.code}` : "";
  return new AwsCallError(`${action} (${subject}): ${why}${detail}`, last ?? { kind: "aborted", code: "AbortError", message: why }, action, cause ? { cause } : undefined);
}
