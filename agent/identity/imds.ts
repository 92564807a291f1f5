import { MetadataService } from "@aws-sdk/ec2-metadata-service";
import { EXIT, ExitError } from "../exit-codes.js";

/** Who this instance is, as instance metadata (IMDSv2) tells it. */
export interface Identity {
  readonly instanceId: string;
  readonly region: string;
  readonly az: string;
  readonly vpcId: string;
  readonly subnetId: string;
  readonly eniId: string;
  readonly mac: string;
  readonly privateIp: string;
  readonly accountId?: string;
}

export interface ImdsOptions {
  /** Default: AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254. */
  endpoint?: string;
  timeoutMs: number;
}

/**
 * A thin IMDSv2-only reader. Tokens are required: the SDK client is built with
 * `ec2MetadataV1Disabled`, so a token refusal fails instead of falling back to IMDSv1.
 */
export class InstanceMetadata {
  private readonly service: MetadataService;
  readonly endpoint: string;

  constructor(options: ImdsOptions) {
    this.endpoint = options.endpoint ?? process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT ?? "http://169.254.169.254";
    this.service = new MetadataService({
      endpoint: this.endpoint,
      ec2MetadataV1Disabled: true,
      httpOptions: { timeout: options.timeoutMs },
      retries: 1,
      backoff: 0.2,
    });
  }

  /** Reads one metadata path (relative to /latest/); throws with the path in the message. */
  async get(path: string): Promise<string> {
    try {
      // The SDK joins endpoint.pathname ("/") and the path as given, so a leading slash here
      // would ask for "//latest/..." (a 301 from the metadata mock's router): pass it without.
      return (await this.service.request(`latest/${path}`, {})).trim();
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const message = (err as Error).message;
      // The SDK's words when PUT /latest/api/token fails and IMDSv1 is off ("fetching token is disabled").
      const detail = status
        ? `HTTP ${status}`
        : /IMDSv1 is disabled/i.test(message)
          ? "no IMDSv2 token (PUT /latest/api/token refused or unanswered) and IMDSv1 is never used: is instance metadata enabled, and the PUT response hop limit ≥ 2 inside containers?"
          : /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|timed? ?out/i.test(message)
            ? `unreachable (${message}): not on EC2, or instance metadata is disabled`
            : message;
      throw new ExitError(`instance metadata ${this.endpoint}/latest/${path}: ${detail}`, EXIT.identity, { cause: err });
    }
  }

  /** Reads a path that may legitimately be absent (404 → undefined). */
  async getOptional(path: string): Promise<string | undefined> {
    try {
      return await this.get(path);
    } catch (err) {
      if (/HTTP 404$/.test((err as Error).message)) return undefined;
      throw err;
    }
  }

  async identity(): Promise<Identity> {
    const [instanceId, az, mac, privateIp] = await Promise.all([
      this.get("meta-data/instance-id"),
      this.get("meta-data/placement/availability-zone"),
      this.get("meta-data/mac"),
      this.get("meta-data/local-ipv4"),
    ]);
    const macBase = `meta-data/network/interfaces/macs/${mac}`;
    const [vpcId, subnetId, eniId, regionPath, document] = await Promise.all([
      this.get(`${macBase}/vpc-id`),
      this.get(`${macBase}/subnet-id`),
      this.get(`${macBase}/interface-id`),
      this.getOptional("meta-data/placement/region"),
      this.getOptional("dynamic/instance-identity/document"),
    ]);
    const doc = parseIdentityDocument(document);
    return {
      instanceId,
      az,
      mac,
      privateIp,
      vpcId,
      subnetId,
      eniId,
      region: regionPath ?? doc.region ?? az.replace(/[a-z]$/, ""),
      ...(doc.accountId ? { accountId: doc.accountId } : {}),
    };
  }

  /** `autoscaling/target-lifecycle-state`, or undefined when the instance is not in an ASG. */
  lifecycleState(): Promise<string | undefined> {
    return this.getOptional("meta-data/autoscaling/target-lifecycle-state");
  }

  /** `spot/instance-action` JSON text, or undefined while no interruption is scheduled. */
  spotInstanceAction(): Promise<string | undefined> {
    return this.getOptional("meta-data/spot/instance-action");
  }
}

function parseIdentityDocument(text: string | undefined): { region?: string; accountId?: string } {
  if (!text) return {};
  try {
    const doc = JSON.parse(text) as Record<string, unknown>;
    return {
      ...(typeof doc.region === "string" ? { region: doc.region } : {}),
      ...(typeof doc.accountId === "string" ? { accountId: doc.accountId } : {}),
    };
  } catch {
    return {};
  }
}
