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

/** Seconds an IMDSv2 token lives (the service's maximum); it is renewed a minute before. */
const TOKEN_TTL_S = 21_600;
const TOKEN_RENEW_EARLY_MS = 60_000;
const CONNECTION_FAILURE = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|timed? ?out/i;

/** The token PUT failed; no metadata GET is sent without a token (IMDSv1 is never used). */
class TokenError extends Error {}

/**
 * A thin IMDSv2-only reader. One token is fetched (single-flight) and reused until shortly before
 * it expires, or until the service answers 401 (a restarted service forgets its tokens). The SDK
 * client alone would PUT a fresh token before every GET: twice the calls against the per-ENI
 * metadata rate limit, and parallel PUTs crash amazon-ec2-metadata-mock v1.12.0 (its token map
 * has no lock: "fatal error: concurrent map writes").
 */
export class InstanceMetadata {
  /** Sends GETs with the token given; never fetches one itself. */
  private readonly reader: MetadataService;
  /** Only PUTs /latest/api/token. */
  private readonly tokens: MetadataService;
  private token: { value: string; renewAt: number } | undefined;
  private tokenFetch: Promise<string> | undefined;
  readonly endpoint: string;

  constructor(options: ImdsOptions) {
    this.endpoint = options.endpoint ?? process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT ?? "http://169.254.169.254";
    const common = { endpoint: this.endpoint, httpOptions: { timeout: options.timeoutMs }, retries: 1, backoff: 0.2 };
    // `disableFetchToken` with v1 "enabled" only lets the SDK send our token header itself;
    // every GET below carries a token, so nothing is ever read the IMDSv1 way.
    this.reader = new MetadataService({ ...common, ec2MetadataV1Disabled: false, disableFetchToken: true });
    this.tokens = new MetadataService({ ...common, ec2MetadataV1Disabled: true, tokenTtl: TOKEN_TTL_S });
  }

  private currentToken(): Promise<string> {
    if (this.token && Date.now() < this.token.renewAt) return Promise.resolve(this.token.value);
    this.tokenFetch ??= this.tokens
      .fetchMetadataToken()
      .then((value) => {
        this.token = { value, renewAt: Date.now() + TOKEN_TTL_S * 1000 - TOKEN_RENEW_EARLY_MS };
        return value;
      })
      .catch((err: unknown) => {
        throw new TokenError((err as Error).message, { cause: err });
      })
      .finally(() => {
        this.tokenFetch = undefined;
      });
    return this.tokenFetch;
  }

  private async read(path: string): Promise<string> {
    const token = await this.currentToken();
    try {
      // The SDK joins endpoint.pathname ("/") and the path as given, so a leading slash here
      // would ask for "//latest/..." (a 301 from the metadata mock's router): pass it without.
      return await this.reader.request(`latest/${path}`, { headers: { "x-aws-ec2-metadata-token": token } });
    } catch (err) {
      if (httpStatus(err) !== 401) throw err;
      if (this.token?.value === token) this.token = undefined;
      return this.reader.request(`latest/${path}`, { headers: { "x-aws-ec2-metadata-token": await this.currentToken() } });
    }
  }

  /** Reads one metadata path (relative to /latest/); throws with the path in the message. */
  async get(path: string): Promise<string> {
    try {
      return (await this.read(path)).trim();
    } catch (err) {
      const status = httpStatus(err);
      const message = (err as Error).message;
      const detail =
        err instanceof TokenError && !CONNECTION_FAILURE.test(message)
          ? `no IMDSv2 token (PUT /latest/api/token refused or unanswered) and IMDSv1 is never used: is instance metadata enabled, and the PUT response hop limit ≥ 2 inside containers? (${message})`
          : status
            ? `HTTP ${status}`
            : CONNECTION_FAILURE.test(message)
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

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
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
