import { DescribeInstancesCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { classifyAwsError } from "../aws/errors.js";
import type { Clock } from "../clock.js";
import type { Identity } from "../identity/index.js";
import type { Logger } from "../observe/log.js";

/**
 * The source/destination check state of this instance, for the `nat` health check, read
 * through EC2 DescribeInstances and failing static.
 *
 * The nat check proves the data path; EC2 is the control plane. A throttled, slow or failing
 * DescribeInstances says nothing about whether this host forwards packets, and during an EC2
 * API outage every node sees the same failure at the same time: if that failed the check, every
 * node would release its routes at once and none could take them back (issue #14, scenario 5).
 * So:
 *
 * - EC2 is asked at most once per `refreshMs` (the nat check runs every second), from the first
 *   call on; a refresh runs in the background and callers get the last good answer at once;
 * - a read that fails (any error, no answer, or an answer without the instance or its
 *   SourceDestCheck) keeps the last good answer, for at most `maxStaleMs` after that answer
 *   was read (default 10 minutes); a read that succeeds and says the check is ON is a real
 *   data-path failure and is returned from then on;
 * - past `maxStaleMs` without a good read, the state is unknown again and the reader rejects
 *   (the nat check then fails, naming the reason): a verification that old no longer proves
 *   anything. Raise `maxStaleMs` to ride out longer EC2 outages;
 * - before the first good read the reader rejects too (a node that never verified the state
 *   cannot pass the check, so it holds no route that a failure could release), and waits for
 *   that first read instead of answering from nothing; failed first reads are retried at most
 *   every `min(refreshMs, 5 s)`.
 *
 * One warning per outage, one line when EC2 answers again, an error when the answer expires.
 */

export interface SourceDestReaderDeps {
  ec2: EC2Client;
  identity: Pick<Identity, "instanceId">;
  clock: Clock;
  log: Logger;
  /** How often EC2 is asked at most. Default 60 s. */
  refreshMs?: number;
  /** How long the last good answer is kept while reads fail. Default 10 minutes. */
  maxStaleMs?: number;
  /** Timeout of one DescribeInstances. Default 5 s. */
  readTimeoutMs?: number;
  /** The read itself (tests); default DescribeInstances of this instance. */
  read?: (signal: AbortSignal) => Promise<boolean>;
}

export const SOURCE_DEST_REFRESH_MS = 60_000;
export const SOURCE_DEST_MAX_STALE_MS = 10 * 60_000;
const READ_TIMEOUT_MS = 5000;
const FIRST_READ_RETRY_MS = 5000;

/** The state cannot be told: never read, or the last good answer is older than maxStaleMs. */
export class SourceDestStateUnknownError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SourceDestStateUnknownError";
  }
}

/** DescribeInstances of this instance → SourceDestCheck === false; throws when the answer does not say. */
async function describeSourceDestCheckOff(ec2: EC2Client, instanceId: string, signal: AbortSignal): Promise<boolean> {
  const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }), { abortSignal: signal });
  const check = res.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instanceId)?.SourceDestCheck;
  if (typeof check !== "boolean") throw new Error(`DescribeInstances did not report SourceDestCheck of ${instanceId}`);
  return check === false;
}

function reasonOf(err: unknown): string {
  const failure = classifyAwsError(err);
  return failure.code && failure.code !== "Error" ? `${failure.code}: ${failure.message}` : failure.message;
}

/**
 * Returns the reader the nat check calls (as `sourceDestCheckOff`): resolves true when the
 * check is off, false when EC2 says it is on, rejects with SourceDestStateUnknownError when
 * the state cannot be told (see above).
 */
export function createSourceDestReader(deps: SourceDestReaderDeps): () => Promise<boolean> {
  const { clock, log } = deps;
  const refreshMs = deps.refreshMs ?? SOURCE_DEST_REFRESH_MS;
  const maxStaleMs = deps.maxStaleMs ?? SOURCE_DEST_MAX_STALE_MS;
  const readTimeoutMs = deps.readTimeoutMs ?? READ_TIMEOUT_MS;
  const read = deps.read ?? ((signal: AbortSignal) => describeSourceDestCheckOff(deps.ec2, deps.identity.instanceId, signal));

  let good: { off: boolean; at: number } | undefined;
  let lastAttemptAt: number | undefined;
  let lastError: string | undefined;
  let failingSince: number | undefined;
  let expiredLogged = false;
  let inFlight: Promise<void> | undefined;

  const refresh = (): Promise<void> => {
    if (inFlight) return inFlight;
    lastAttemptAt = clock.now();
    inFlight = read(AbortSignal.timeout(readTimeoutMs))
      .then(
        (off) => {
          if (failingSince !== undefined) {
            log.info({ check: "nat", off, failedForMs: Math.round(clock.now() - failingSince) }, "source/dest check state readable from EC2 again");
          }
          good = { off, at: clock.now() };
          failingSince = undefined;
          lastError = undefined;
          expiredLogged = false;
        },
        (err: unknown) => {
          lastError = reasonOf(err);
          if (failingSince === undefined) {
            failingSince = clock.now();
            log.warn(
              { check: "nat", err: lastError, lastGood: good ? { off: good.off, ageMs: Math.round(clock.now() - good.at) } : null, maxStaleMs },
              good ? `source/dest check state: EC2 read failed; keeping the last good answer for up to ${Math.round(maxStaleMs / 1000)} s` : "source/dest check state: EC2 read failed and there is no good answer yet",
            );
          }
        },
      )
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };

  const unknown = (why: string) => new SourceDestStateUnknownError(`source/dest check state unknown: ${why}${lastError ? ` (EC2: ${lastError})` : ""}`);

  return async () => {
    const now = clock.now();
    if (!good) {
      const retryMs = Math.min(refreshMs, FIRST_READ_RETRY_MS);
      if (lastAttemptAt === undefined || inFlight || now - lastAttemptAt >= retryMs) await refresh();
      if (!good) throw unknown("never read from EC2");
      return (good as { off: boolean }).off;
    }
    if (lastAttemptAt === undefined || now - lastAttemptAt >= refreshMs) void refresh();
    const age = now - good.at;
    if (age > maxStaleMs) {
      if (!expiredLogged) {
        expiredLogged = true;
        log.error({ check: "nat", ageMs: Math.round(age), maxStaleMs, err: lastError ?? null }, "source/dest check state: the last good answer is older than maxStale; the nat check fails until EC2 answers");
      }
      throw unknown(`last read from EC2 ${Math.round(age / 1000)} s ago, more than ${Math.round(maxStaleMs / 1000)} s`);
    }
    return good.off;
  };
}
