import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../agent/config/index.js";
import { decideEip } from "../../agent/routes/eip.js";
import { decideSecondaryIp } from "../../agent/routes/secondary-ip.js";

const PAIR = { subnet: "subnet-0aaa", privateIp: "10.0.0.200" };

describe("same-AZ mode: the secondary IP and its Elastic IP follow the holder", () => {
  it.each([
    ["a holder in the pair's subnet without the address takes it", "subnet-0aaa", ["10.0.0.5"], false, "assign", /not on this ENI/],
    ["already on this ENI: nothing", "subnet-0aaa", ["10.0.0.5", "10.0.0.200"], false, "none", /already/],
    ["already here, re-assert: assign again", "subnet-0aaa", ["10.0.0.5", "10.0.0.200"], true, "assign", /re-assert/],
    ["a holder in another subnet (AZ) cannot take it", "subnet-0bbb", undefined, false, "other-subnet", /connections are not kept/],
  ] as const)("%s", (_name, subnet, assigned, force, action, reason) => {
    const d = decideSecondaryIp(PAIR, subnet, assigned, force);
    expect(d.action).toBe(action);
    expect(d.reason).toMatch(reason);
  });

  it("an EIP on this ENI but at its primary address is moved onto the secondary address", () => {
    const d = decideEip({ allocationId: "eipalloc-1", networkInterfaceId: "eni-me", privateIpAddress: "10.0.0.5" }, "eni-me", false, "10.0.0.200");
    expect(d).toEqual({ associate: true, reason: "on this ENI but at 10.0.0.5, not 10.0.0.200" });
    expect(decideEip({ allocationId: "eipalloc-1", networkInterfaceId: "eni-me", privateIpAddress: "10.0.0.200" }, "eni-me", false, "10.0.0.200").associate).toBe(false);
  });

  const problemsOf = (routes: string): string => {
    try {
      parseConfig(`cluster: prod\nroutes:\n${routes}`, "t.yaml");
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.problems.map((p) => `${p.path}: ${p.message}`).join("\n");
    }
    return "";
  };

  it("validates: an IPv4 route with a subnet and an IPv4 address", () => {
    expect(problemsOf(`  - { name: a, table: { id: rtb-0abc }, destination: 0.0.0.0/0, sameAz: { subnet: subnet-0aaa, privateIp: 10.0.0.200 } }\n`)).toBe("");
  });

  it("refuses an IPv6 route, a bad address and one address named by two routes", () => {
    expect(problemsOf(`  - { name: a, table: { id: rtb-0abc }, destination: ::/0, sameAz: { subnet: subnet-0aaa, privateIp: 10.0.0.200 } }\n`)).toMatch(/routes\[0\]\.sameAz: same-AZ mode SNATs IPv4.*::\/0 is an IPv6 route/);
    expect(problemsOf(`  - { name: a, table: { id: rtb-0abc }, destination: 0.0.0.0/0, sameAz: { subnet: subnet-0aaa, privateIp: 10.0.0.300 } }\n`)).toMatch(/routes\[0\]\.sameAz\.privateIp: not an IPv4 address/);
    expect(
      problemsOf(
        `  - { name: a, table: { id: rtb-0abc }, destination: 0.0.0.0/0, sameAz: { subnet: subnet-0aaa, privateIp: 10.0.0.200 } }\n  - { name: b, table: { id: rtb-0abd }, destination: 0.0.0.0/0, sameAz: { subnet: subnet-0aaa, privateIp: 10.0.0.200 } }\n`,
      ),
    ).toMatch(/routes\[1\]\.sameAz\.privateIp: private IP 10.0.0.200 is already named by routes\[0\] \("a"\)/);
  });
});
