import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, parseCidr, cidrsOverlap, parseDuration } from "../../agent/config/index.js";

const VALID = `cluster: prod
routes:
  - name: default-v4
    table: { id: rtb-0abc }
    destination: 0.0.0.0/0
`;

function problems(yaml: string) {
  try {
    parseConfig(yaml, "test.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("config loader", () => {
  it("accepts a minimal config and fills documented defaults", () => {
    const cfg = parseConfig(VALID, "test.yaml");
    expect(cfg.election.lockDelay).toBe(1200);
    expect(cfg.aws.writeTimeout).toBe(700);
    expect(cfg.election.fenceMargin).toBe(500);
    expect(cfg.peers).toMatchObject({ enabled: true, port: 9732, interval: 200, misses: 4 });
    expect(cfg.election.nodeChecks).toEqual(["serfHealth"]);
    expect(cfg.reconcileInterval).toBe(30_000);
    expect(cfg.routes[0]).toMatchObject({ name: "default-v4", target: "instance", onRelease: "keep", preferredAz: "auto" });
    expect(Object.isFrozen(cfg.routes[0])).toBe(true);
  });

  it("the fast profile lowers lockDelay, writeTimeout, fenceMargin and the peer heartbeat together", () => {
    const cfg = parseConfig(`${VALID}election: { profile: fast }\n`, "t.yaml");
    expect(cfg.election.lockDelay).toBe(650);
    expect(cfg.aws.writeTimeout).toBe(400);
    expect(cfg.election.fenceMargin).toBe(250);
    expect(cfg.peers).toMatchObject({ interval: 100, misses: 3 });
    expect(cfg.election.lockDelay).toBeGreaterThanOrEqual(cfg.aws.writeTimeout + cfg.election.fenceMargin);
  });

  it("malformed YAML names the line", () => {
    const p = problems("cluster: prod\nroutes: [\n  - name: x\n");
    expect(p[0]?.path).toBe("(yaml)");
    expect(p[0]?.message).toMatch(/malformed YAML/);
    expect(p[0]?.line).toBeGreaterThan(0);
  });

  it("an unknown key is named with its path and line", () => {
    const p = problems(VALID.replace("destination: 0.0.0.0/0", "destination: 0.0.0.0/0\n    colour: red"));
    expect(p).toEqual([{ path: "routes[0]", line: 6, message: 'unknown key "colour"' }]);
  });

  it("a missing required field is named", () => {
    const p = problems("cluster: prod\nroutes:\n  - name: a\n    table: { main: true }\n");
    expect(p).toEqual([expect.objectContaining({ path: "routes[0].destination", message: expect.stringMatching(/required field is missing/) })]);
  });

  it("an invalid CIDR is named with the reason", () => {
    const p = problems(VALID.replace("0.0.0.0/0", "10.0.0.1/33"));
    expect(p).toEqual([{ path: "routes[0].destination", line: 5, message: expect.stringMatching(/invalid CIDR.*\/33, longer than \/32/) }]);
  });

  it("host bits in a CIDR are refused with the network address suggested", () => {
    const p = problems(VALID.replace("0.0.0.0/0", '"2600:1f18::1/56"'));
    expect(p[0]?.message).toMatch(/network address is 2600:1f18::\/56/);
  });

  it("lockDelay shorter than writeTimeout + margin is refused, not adjusted", () => {
    const p = problems(`${VALID}election: { lockDelay: 1s }\n`);
    expect(p[0]).toMatchObject({ path: "election.lockDelay" });
    expect(p[0]?.message).toMatch(/lockDelay \(1s\) must be ≥ aws.writeTimeout \(700ms\) \+ election.fenceMargin \(500ms\)/);
  });

  it("a route naming an undefined check is refused", () => {
    const p = problems(VALID.replace("destination: 0.0.0.0/0", "destination: 0.0.0.0/0\n    checks: [egress]"));
    expect(p[0]).toMatchObject({ path: "routes[0].checks[0]", message: 'unknown check "egress" (defined: none)' });
  });

  it("duplicate route names and duplicate table+destination are refused", () => {
    const two = `${VALID}  - name: default-v4\n    table: { id: rtb-0abc }\n    destination: 0.0.0.0/0\n`;
    expect(problems(two).map((p) => p.path)).toContain("routes[1].name");
    const same = `${VALID}  - name: other\n    table: { id: rtb-0abc }\n    destination: 0.0.0.0/0\n`;
    expect(problems(same)).toEqual([expect.objectContaining({ path: "routes[1]", message: expect.stringMatching(/same table and destination/) })]);
  });

  it("a route name Consul keys and tags cannot hold is refused", () => {
    expect(problems(VALID.replace("default-v4", "Default/V4"))[0]?.path).toBe("routes[0].name");
  });

  it("durations need a unit", () => {
    expect(problems(`${VALID}reconcileInterval: 30\n`)[0]?.path).toBe("reconcileInterval");
  });
});

describe("CIDR and duration helpers", () => {
  it("canonicalises IPv6 and detects overlap", () => {
    const a = parseCidr("2600:1F18:0:0::/56");
    expect(a).toMatchObject({ family: 6, text: "2600:1f18::/56" });
    const wide = parseCidr("10.0.0.0/8");
    const narrow = parseCidr("10.1.0.0/16");
    const other = parseCidr("192.168.0.0/16");
    if ("error" in wide || "error" in narrow || "error" in other) throw new Error("parse failed");
    expect(cidrsOverlap(wide, narrow)).toBe(true);
    expect(cidrsOverlap(wide, other)).toBe(false);
  });

  it("parses durations", () => {
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("3")).toEqual({ error: expect.stringMatching(/not a duration/) });
  });
});
