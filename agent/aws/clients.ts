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

/** The section of the config the clients depend on, plus the region from identity. */
export function awsClientOptions(
  config: { region?: string; aws: { endpoint?: string } },
  identity: { region: string },
  env: NodeJS.ProcessEnv = process.env,
): AwsClientOptions {
  const endpoint = config.aws.endpoint ?? env.AWS_ENDPOINT_URL;
  return { region: config.region ?? identity.region, ...(endpoint ? { endpoint } : {}) };
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
