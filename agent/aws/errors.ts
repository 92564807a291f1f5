import { EXIT, ExitError } from "../exit-codes.js";

/** What went wrong with an AWS call, in the terms the agent acts on. */
export type AwsErrorKind =
  /** RequestLimitExceeded and friends: the request was refused unexecuted; back off and retry. */
  | "throttled"
  /** AccessDenied / UnauthorizedOperation: an IAM permission is missing. Fatal. */
  | "permission"
  /** An id that does not exist (InvalidRouteTableID.NotFound, …). Fatal. */
  | "notFound"
  /** Any other 4xx the caller sent wrongly. Fatal. */
  | "invalid"
  /** 5xx, connection reset, socket timeout: the outcome is unknown; retry within budget. */
  | "transient"
  /** Our own deadline or the caller's signal ended the call. */
  | "aborted";

export interface AwsFailure {
  readonly kind: AwsErrorKind;
  readonly code: string;
  readonly status?: number;
  readonly message: string;
}

const THROTTLING_CODES = new Set([
  "RequestLimitExceeded",
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "EC2ThrottledException",
  "RequestThrottled",
  "RequestThrottledException",
  "TooManyRequestsException",
  "SlowDown",
]);

const PERMISSION_CODES = new Set(["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure", "Blocked", "OptInRequired"]);

const NETWORK_CODES = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "TimeoutError", "RequestTimeout"]);

/** What the resource of an InvalidXxxID.NotFound code is called in a message. */
const ID_NOUNS: Record<string, string> = {
  InvalidRouteTableID: "route table",
  InvalidInstanceID: "instance",
  InvalidNetworkInterfaceID: "network interface",
  InvalidSubnetID: "subnet",
  InvalidVpcID: "VPC",
  InvalidRoute: "route",
  InvalidGatewayID: "gateway",
  InvalidAllocationID: "allocation",
};

interface SdkErrorShape {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: { throttling?: boolean };
}

/** Classifies anything an SDK v3 call can throw. */
export function classifyAwsError(err: unknown): AwsFailure {
  const e = (err ?? {}) as SdkErrorShape;
  const code = e.Code ?? (e.name && e.name !== "Error" ? e.name : undefined) ?? e.code ?? "Error";
  const status = e.$metadata?.httpStatusCode;
  const message = e.message ?? String(err);
  const base = { code, message, ...(status !== undefined ? { status } : {}) };
  if (code === "AbortError") return { kind: "aborted", ...base };
  if (THROTTLING_CODES.has(code) || e.$retryable?.throttling || /rate exceeded/i.test(message)) return { kind: "throttled", ...base };
  if (PERMISSION_CODES.has(code)) return { kind: "permission", ...base };
  if (/\.NotFound$/.test(code) || /\.Malformed$/.test(code)) return { kind: "notFound", ...base };
  if (NETWORK_CODES.has(code) || NETWORK_CODES.has(e.code ?? "") || status === undefined || status >= 500) return { kind: "transient", ...base };
  return { kind: "invalid", ...base };
}

/** True for failures a retry cannot fix: the agent should stop and say why. */
export function isFatal(failure: AwsFailure): boolean {
  return failure.kind === "permission" || failure.kind === "notFound" || failure.kind === "invalid";
}

function quotedId(message: string): string | undefined {
  return /'([a-z]+-[0-9a-zA-Z]+)'/.exec(message)?.[1] ?? /\b((?:rtb|i|eni|subnet|vpc|igw|nat)-[0-9a-f]+)\b/.exec(message)?.[1];
}

/**
 * One sentence an operator can act on. `action` is the IAM action, e.g. "ec2:ReplaceRoute";
 * `subject` names what the call was about ("route nat-a in rtb-0abc").
 */
export function describeAwsFailure(failure: AwsFailure, action: string, subject?: string): string {
  const about = subject ? ` (${subject})` : "";
  switch (failure.kind) {
    case "permission":
      return `missing IAM permission ${action}${about}: AWS answered ${failure.code}: ${failure.message}`;
    case "notFound": {
      const prefix = failure.code.replace(/\.(NotFound|Malformed)$/, "");
      const noun = ID_NOUNS[prefix] ?? "id";
      const id = quotedId(failure.message);
      const what = failure.code.endsWith(".Malformed") ? "malformed" : "unknown";
      return `${action}${about}: ${what} ${noun}${id ? ` ${id}` : ""} (${failure.code}: ${failure.message})`;
    }
    case "throttled":
      return `${action}${about}: throttled by AWS (${failure.code}); backing off`;
    case "aborted":
      return `${action}${about}: aborted (deadline or shutdown)`;
    case "transient":
      return `${action}${about}: ${failure.code}${failure.status ? ` HTTP ${failure.status}` : ""}: ${failure.message}`;
    case "invalid":
      return `${action}${about}: AWS rejected the request: ${failure.code}: ${failure.message}`;
  }
}

/** A non-fatal AWS failure (throttling, 5xx, timeout) after the retry budget was spent. */
export class AwsCallError extends Error {
  constructor(
    message: string,
    readonly failure: AwsFailure,
    readonly action: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "AwsCallError";
  }
}

/**
 * The error to throw for a failed call: ExitError(EXIT.aws) when a retry cannot help (a
 * missing permission, an unknown id), AwsCallError otherwise.
 */
export function toAwsError(err: unknown, action: string, subject?: string): ExitError | AwsCallError {
  if (err instanceof ExitError || err instanceof AwsCallError) return err;
  const failure = classifyAwsError(err);
  const message = describeAwsFailure(failure, action, subject);
  return isFatal(failure) ? new ExitError(message, EXIT.aws, { cause: err }) : new AwsCallError(message, failure, action, { cause: err });
}
