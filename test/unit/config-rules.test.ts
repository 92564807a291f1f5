import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { ConfigError, configWarnings, parseConfig, type ConfigProblem } from "../../agent/config/index.js";
import { resolveConsulSettings } from "../../agent/consul/connection.js";
import { parseListenAddress } from "../../agent/observe/listen-address.js";

/**
 * Config rules checked per rule, not per field (issue #15, item 9): what would fail or misbehave
 * at run time is refused by `validate` (and so at start-up); what is legal but risky is a
 * warning at validate time, with file, line and path.
 */

const REPO = join(import.meta.dirname, "..", "..");
const BASE = {
  cluster: "prod",
  region: "eu-west-1",
  checks: { egress: { type: "ping", host: "1.1.1.1" } },
  routes: [{ name: "nat-a", table: { id: "rtb-0abc" }, destination: "0.0.0.0/0", checks: ["egress"] }],
};

type Json = Record<string, unknown>;
/** BASE with `patch` merged in (objects merged one level deep). */
function config(patch: Json): Json {
  const out: Json = { ...BASE };
  for (const [k, v] of Object.entries(patch)) {
    const base = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && base && typeof base === "object" && !Array.isArray(base) ? { ...(base as Json), ...(v as Json) } : v;
  }
  return out;
}

function errorsOf(cfg: Json): ConfigProblem[] {
  try {
    parseConfig(stringify(cfg), "nat.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

function warningsOf(cfg: Json): ConfigProblem[] {
  return [...configWarnings(parseConfig(stringify(cfg), "nat.yaml"))];
}

describe("ship: config rules that would fail at run time are refused", () => {
  const cases: [string, Json, string, RegExp][] = [
    ["an http check's bodyMatch that is not a regular expression", { checks: { egress: { type: "http", url: "http://127.0.0.1/", bodyMatch: "ok(" } } }, "checks.egress.bodyMatch", /not a valid regular expression: .*ok\(/],
    ["statusMin above statusMax", { checks: { egress: { type: "http", url: "http://127.0.0.1/", statusMin: 500, statusMax: 200 } } }, "checks.egress.statusMin", /statusMin \(500\) is above statusMax \(200\): no response could pass/],
    ["a ping host that is neither an address nor a name", { checks: { egress: { type: "ping", host: "1.1.1.1 ; reboot" } } }, "checks.egress.host", /neither an IP address nor a host name/],
    ["an IPv4-looking host out of range", { checks: { egress: { type: "tcp", host: "300.1.1.1", port: 53 } } }, "checks.egress.host", /not an IPv4 address/],
    ["an IPv6 host in brackets", { checks: { egress: { type: "ping", host: "[2001:db8::1]" } } }, "checks.egress.host", /without brackets/],
    ["http.listen without a port", { http: { listen: "127.0.0.1" } }, "http.listen", /is not host:port/],
    ["http.listen with a port above 65535", { http: { listen: "127.0.0.1:70000" } }, "http.listen", /is not host:port/],
    ["a Consul address that is no URL", { consul: { address: "http://[::1" } }, "consul.address", /is not a URL or host:port/],
    ["a Consul address that is not http(s)", { consul: { address: "unix:///run/consul.sock" } }, "consul.address", /only http:\/\/ and https:\/\//],
    ["an IMDS endpoint that is no URL", { imds: { endpoint: "169.254.169.254" } }, "imds.endpoint", /is not a URL/],
    ["an AWS endpoint with a query", { aws: { endpoint: "http://127.0.0.1:5000/?x=1" } }, "aws.endpoint", /no query or fragment/],
    ["a client certificate without its key", { consul: { address: "https://127.0.0.1:8501", certFile: "/etc/c.pem" } }, "consul.keyFile", /go together/],
    ["a preferred AZ that is no AZ name", { routes: [{ ...BASE.routes[0], preferredAz: "west" }] }, "routes[0].preferredAz", /neither auto, none nor an availability zone name/],
    ["a preferred AZ in another region", { routes: [{ ...BASE.routes[0], preferredAz: "us-east-1a" }] }, "routes[0].preferredAz", /us-east-1a is not in region eu-west-1/],
    ["a fence margin that leaves the lease no time", { election: { livenessTtl: "3s", fenceMargin: "2s", lockDelay: "5s" } }, "election.fenceMargin", /must be below 2\/3 of livenessTtl \(3s\)/],
    ["a fence margin is quoted as written (the property test's counterexample)", { election: { fenceMargin: "3s" } }, "election.fenceMargin", /^fenceMargin \(3s\) must be below 2\/3 of livenessTtl/],
    ["lockDelay shorter than writeTimeout + margin (the existing rule, now per rule)", { election: { lockDelay: "1s" } }, "election.lockDelay", /must be ≥ aws\.writeTimeout/],
  ];

  it.each(cases)("ship: %s", (_what, patch, path, message) => {
    const problems = errorsOf(config(patch));
    const hit = problems.find((p) => p.path === path);
    expect(hit, JSON.stringify(problems)).toBeDefined();
    expect(hit!.message).toMatch(message);
    expect(hit!.line, "every problem names its line").toBeGreaterThan(0);
  });

  it.each([
    ["an empty target set", { type: "ping", host: [] }, "checks.egress.host", /at least one/],
    ["one bad host among several (named by its index)", { type: "ping", host: ["1.1.1.1", "8.8.8.8 ; reboot"] }, "checks.egress.host[1]", /neither an IP address nor a host name/],
    ["the same host twice", { type: "tcp", host: ["1.1.1.1", "9.9.9.9", "1.1.1.1"], port: 443 }, "checks.egress.host[2]", /"1\.1\.1\.1" is listed twice/],
  ] as [string, Json, string, RegExp][])("ship: any-of check targets: %s is refused", (_what, egress, path, message) => {
    const problems = errorsOf(config({ checks: { egress } }));
    const hit = problems.find((p) => p.path === path);
    expect(hit, JSON.stringify(problems)).toBeDefined();
    expect(hit!.message).toMatch(message);
    expect(hit!.line).toBeGreaterThan(0);
  });

  it("ship: any-of check targets: a list of hosts for ping and tcp validates and keeps its order", () => {
    const cfg = parseConfig(stringify(config({ checks: { egress: { type: "ping", host: ["1.1.1.1", "8.8.8.8", "9.9.9.9"] }, dns: { type: "tcp", host: ["10.0.0.2", "dns.example"], port: 53 } } })), "nat.yaml");
    expect(cfg.checks.egress).toMatchObject({ type: "ping", host: ["1.1.1.1", "8.8.8.8", "9.9.9.9"] });
    expect(cfg.checks.dns).toMatchObject({ type: "tcp", host: ["10.0.0.2", "dns.example"] });
  });

  it("ship: every rule's problem is reported at once, not one per run", () => {
    const problems = errorsOf(config({ http: { listen: "nowhere" }, checks: { egress: { type: "http", url: "http://127.0.0.1/", bodyMatch: "[", statusMin: 599, statusMax: 100 } } }));
    expect(problems.map((p) => p.path).sort()).toEqual(["checks.egress.bodyMatch", "checks.egress.statusMin", "http.listen"]);
  });

  it("ship: the problem's line is the offending value's own line", () => {
    const text = "cluster: prod\nregion: eu-west-1\nhttp:\n  listen: 'localhost'\nroutes:\n  - name: a\n    table: { id: rtb-0a }\n    destination: 0.0.0.0/0\n";
    try {
      parseConfig(text, "nat.yaml");
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).message).toContain('nat.yaml:4: http.listen: "localhost" is not host:port');
    }
  });
});

describe("ship: legal but risky values validate, with a warning", () => {
  const cases: [string, Json, string, RegExp][] = [
    ["an HTTP endpoint off loopback", { http: { listen: "0.0.0.0:9731" } }, "http.listen", /reachable from other hosts/],
    ["a route with no check", { routes: [{ name: "nat-a", table: { id: "rtb-0abc" }, destination: "0.0.0.0/0" }] }, "routes[0].checks", /names no check/],
    ["a check no route uses", { checks: { egress: { type: "ping", host: "1.1.1.1" }, spare: { type: "nat" } } }, "checks.spare", /used by no route/],
    ["sessions without serfHealth", { election: { nodeChecks: [] } }, "election.nodeChecks", /without serfHealth/],
    ["no failback hold-down", { policy: { holdDown: "0s" } }, "policy.holdDown", /flaps/],
    ["plain http to a remote Consul", { consul: { address: "http://10.0.0.5:8500" } }, "consul.address", /travel unencrypted/],
    ["TLS files with an http address", { consul: { caFile: "/etc/ca.pem" } }, "consul.caFile", /ignored: consul\.address is http/],
    ["a group name without a hook", { lifecycle: { autoScalingGroup: "nat-a" } }, "lifecycle.autoScalingGroup", /without lifecycle\.hookName/],
    ["a hook the agent never completes", { lifecycle: { watch: false, hookName: "release" } }, "lifecycle.hookName", /never completes this hook/],
  ];

  it.each(cases)("ship: %s", (_what, patch, path, message) => {
    const warnings = warningsOf(config(patch));
    const hit = warnings.find((w) => w.path === path);
    expect(hit, JSON.stringify(warnings)).toBeDefined();
    expect(hit!.message).toMatch(message);
    expect(hit!.line).toBeGreaterThan(0);
  });

  it("ship: the shipped examples validate without a warning", () => {
    for (const f of readdirSync(join(REPO, "examples")).filter((n) => n.endsWith(".yaml"))) {
      expect(configWarnings(parseConfig(readFileSync(join(REPO, "examples", f), "utf8"), f)), f).toEqual([]);
    }
  });

  describe("ship: routeleader validate prints warnings on stderr and still exits 0", () => {
    const dir = mkdtempSync(join(tmpdir(), "rl-config-rules-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("ship: warning lines name file, line and path; the valid line is unchanged", async () => {
      const file = join(dir, "nat.yaml");
      writeFileSync(file, stringify(config({ http: { listen: "0.0.0.0:9731" } })));
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", "tsx", join(REPO, "agent/cli.ts"), "validate", "--config", file], { cwd: REPO });
      expect(stdout).toBe(`${file}: valid (cluster prod, 1 route, 1 check)\n`);
      expect(stderr).toMatch(new RegExp(`^warning: ${file.replace(/[.]/g, "\\.")}:\\d+: http\\.listen: 0\\.0\\.0\\.0:9731 is reachable from other hosts`, "m"));
    });
  });
});

describe("ship: a config that validates can start: run-time parsers accept whatever validate accepts", () => {
  // Values drawn from pools of good, bad and odd strings; whenever the whole config validates,
  // the code that consumes each value at start-up or run time must accept it.
  const listens = ["127.0.0.1:9731", ":9731", "[::1]:9731", "0.0.0.0:80", "", "localhost", "127.0.0.1:", "1.2.3.4:99999", "[::1:9731", "host:port"];
  const patterns = ["ok", "^OK$", "(", "[a-", "a{2,1}", "\\", "(?<n>x)", "x++", ".*", "(?=a)"];
  const consuls = ["http://127.0.0.1:8500", "127.0.0.1:8500", "https://consul.service:8501", "http://[::1]:8500", "http://[::1", "ftp://x", "http://", "localhost:99999", "consul:8500/", ""];
  const hosts = ["1.1.1.1", "::1", "example.com", "a..b", "256.0.0.1", "-x", "host_name", "[::1]", "x".repeat(64), "10.0.0.1.nip.io"];
  const endpoints = ["http://169.254.169.254", "http://[fd00:ec2::254]", "169.254.169.254", "https://ec2.eu-west-1.amazonaws.com", "http://a b", "file:///etc/passwd"];

  it("ship: RegExp, the listen parser, the Consul URL and the endpoint URLs never throw on a validated config", () => {
    fc.assert(
      fc.property(fc.constantFrom(...listens), fc.constantFrom(...patterns), fc.constantFrom(...consuls), fc.constantFrom(...hosts), fc.constantFrom(...endpoints), (listen, pattern, consul, host, endpoint) => {
        const cfg = config({
          http: { listen },
          consul: { address: consul },
          imds: { endpoint },
          checks: { egress: { type: "ping", host }, web: { type: "http", url: "http://127.0.0.1/", bodyMatch: pattern } },
          routes: [{ ...BASE.routes[0], checks: ["egress", "web"] }],
        });
        let parsed;
        try {
          parsed = parseConfig(stringify(cfg), "p.yaml");
        } catch (err) {
          if (err instanceof ConfigError) return; // refused up front: fine
          throw err;
        }
        expect(() => new RegExp((parsed.checks.web as { bodyMatch: string }).bodyMatch)).not.toThrow();
        expect(() => parseListenAddress(parsed.http.listen)).not.toThrow();
        const settings = resolveConsulSettings(parsed.consul, {}, undefined);
        expect(() => new URL(settings.address)).not.toThrow();
        expect(() => new URL(parsed.imds.endpoint!)).not.toThrow();
      }),
      { numRuns: 300 },
    );
  });
});
