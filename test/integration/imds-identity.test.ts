import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InstanceMetadata } from "../../agent/identity/index.js";
import { startAemm, type SimulatedIdentity, type StartedAemm } from "../support/aemm.js";
import { startHttpRelay } from "../support/http-relay.js";

const identity: SimulatedIdentity = {
  instanceId: "i-0a1b2c3d4e5f60718",
  az: "eu-west-1b",
  region: "eu-west-1",
  vpcId: "vpc-0123456789abcdef0",
  subnetId: "subnet-0fedcba9876543210",
  eniId: "eni-0aaaabbbbccccdddd",
  mac: "0a:1b:2c:3d:4e:5f",
  privateIp: "10.0.1.17",
  accountId: "210987654321",
};

function rawGet(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

describe("identity from amazon-ec2-metadata-mock (IMDSv2 only)", () => {
  let aemm: StartedAemm;
  beforeAll(async () => {
    aemm = await startAemm(identity, { imdsv2Only: true });
  });
  afterAll(async () => {
    await aemm?.stop();
  });

  it("reads the configured identity", async () => {
    const imds = new InstanceMetadata({ endpoint: aemm.endpoint, timeoutMs: 1000 });
    expect(await imds.identity()).toEqual(identity);
  });

  it("fetches one token and reuses it for every read, and fetches a new one when the service forgets it", async () => {
    let port = Number(new URL(aemm.endpoint).port);
    const relay = await startHttpRelay({ upstream: aemm.endpoint });
    try {
      const imds = new InstanceMetadata({ endpoint: relay.endpoint, timeoutMs: 1000 });
      // Nine reads, five of them in parallel: one PUT (the mock crashes on parallel PUTs).
      expect(await imds.identity()).toEqual(identity);
      expect(await imds.lifecycleState()).toBe("InService");
      const puts = () => relay.requests().filter((r) => r.method === "PUT" && r.path === "/latest/api/token").length;
      const gets = () => relay.requests().filter((r) => r.method === "GET").length;
      expect(puts()).toBe(1);
      expect(gets()).toBe(10);

      // A restarted metadata service has forgotten the token: 401, then one new token, then the read.
      await aemm.stop();
      aemm = await startAemm(identity, { imdsv2Only: true, port });
      port = Number(new URL(aemm.endpoint).port);
      expect(await imds.get("meta-data/instance-id")).toBe(identity.instanceId);
      expect(puts()).toBe(2);
    } finally {
      await relay.stop();
    }
  });

  it("the mock refuses a request without a token", async () => {
    expect(await rawGet(`${aemm.endpoint}/latest/meta-data/instance-id`)).toBe(401);
  });

  it("fails with the endpoint named when metadata is unreachable, without falling back", async () => {
    const imds = new InstanceMetadata({ endpoint: "http://127.0.0.1:9", timeoutMs: 300 });
    await expect(imds.identity()).rejects.toThrow(/instance metadata http:\/\/127\.0\.0\.1:9\/latest\/meta-data/);
  });
});
