import { AutoScalingClient } from "@aws-sdk/client-auto-scaling";
import { EC2Client } from "@aws-sdk/client-ec2";
import { processMetrics, type CallOutcome, type CallRecorder } from "../observe/metrics.js";
import { classifyAwsError } from "./errors.js";

type Ec2ClientConfig = NonNullable<ConstructorParameters<typeof EC2Client>[0]>;

/** Where and how the agent talks to EC2 and Auto Scaling. */
export interface AwsClientOptions {
  region: string;
  /** Endpoint override (an emulator); default: the SDK's regional endpoint. */
  endpoint?: string;
  /**
   * SDK attempts per call. Default 1: retries run in `withRetries` under a deadline, so the
   * SDK never adds late attempts of its own to a route write.
   */
  maxAttempts?: number;
  /** Default: the SDK's default credential chain (env, profile, instance role). */
  credentials?: Ec2ClientConfig["credentials"];
  /** Socket-level bound of one HTTP request (default 5000 ms). */
  requestTimeoutMs?: number;
  /** Where every call is counted and timed (aws_calls_total, aws_call_seconds); default the process's metrics. */
  metrics?: CallRecorder;
}

/**
 * Client options from the config and identity. The region is `region` from the config, else
 * AWS_REGION, else the instance's own region from metadata. An endpoint set in the config
 * wins; else the SDK itself honours AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_AUTO_SCALING /
 * AWS_ENDPOINT_URL (passing AWS_ENDPOINT_URL here would override the per-service variables).
 */
export function awsClientOptions(config: { region?: string; aws: { endpoint?: string } }, identity: { region: string }, env: NodeJS.ProcessEnv = process.env): AwsClientOptions {
  return { region: config.region ?? (env.AWS_REGION || undefined) ?? identity.region, ...(config.aws.endpoint ? { endpoint: config.aws.endpoint } : {}) };
}

function common(options: AwsClientOptions) {
  const timeout = options.requestTimeoutMs ?? 5000;
  return {
    region: options.region,
    maxAttempts: options.maxAttempts ?? 1,
    requestHandler: { requestTimeout: timeout, connectionTimeout: Math.min(timeout, 3000) },
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
  };
}

/** The outcome label of a failed call. */
export function awsOutcome(err: unknown): CallOutcome {
  const failure = classifyAwsError(err);
  if (failure.kind === "throttled") return "throttled";
  if (failure.kind === "aborted") return "aborted";
  if (/^(TimeoutError|RequestTimeout|ETIMEDOUT)$/.test(failure.code)) return "timeout";
  return "error";
}

type MiddlewareStackOf = EC2Client["middlewareStack"] | AutoScalingClient["middlewareStack"];

/**
 * Counts and times every `send` of the client (all SDK attempts of it), labelled with the
 * action (the command name without "Command": ReplaceRoute, DescribeRouteTables, …) and the
 * outcome. Failed calls also count in errors_total{component="aws"}.
 */
function instrument(stack: MiddlewareStackOf, metrics: CallRecorder): void {
  (stack as EC2Client["middlewareStack"]).add(
    (next, context) => async (args) => {
      const action = (context.commandName ?? "Unknown").replace(/Command$/, "");
      const started = performance.now();
      try {
        const result = await next(args);
        metrics.recordAwsCall(action, "ok", performance.now() - started);
        return result;
      } catch (err) {
        const outcome = awsOutcome(err);
        metrics.recordAwsCall(action, outcome, performance.now() - started);
        if (outcome !== "aborted") metrics.recordError("aws");
        throw err;
      }
    },
    { step: "initialize", name: "routeleaderMetrics", priority: "high" },
  );
}

export function createEc2Client(options: AwsClientOptions): EC2Client {
  const client = new EC2Client(common(options));
  instrument(client.middlewareStack, options.metrics ?? processMetrics);
  return client;
}

export function createAutoScalingClient(options: AwsClientOptions): AutoScalingClient {
  const client = new AutoScalingClient(common(options));
  instrument(client.middlewareStack, options.metrics ?? processMetrics);
  return client;
}
