import { AutoScalingClient } from "@aws-sdk/client-auto-scaling";
import { EC2Client } from "@aws-sdk/client-ec2";

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
}

/**
 * Client options from the config and identity. An endpoint set in the config wins; else the
 * SDK itself honours AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_AUTO_SCALING / AWS_ENDPOINT_URL
 * (passing AWS_ENDPOINT_URL here would override the per-service variables).
 */
export function awsClientOptions(config: { region?: string; aws: { endpoint?: string } }, identity: { region: string }): AwsClientOptions {
  return { region: config.region ?? identity.region, ...(config.aws.endpoint ? { endpoint: config.aws.endpoint } : {}) };
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

export function createEc2Client(options: AwsClientOptions): EC2Client {
  return new EC2Client(common(options));
}

export function createAutoScalingClient(options: AwsClientOptions): AutoScalingClient {
  return new AutoScalingClient(common(options));
}
