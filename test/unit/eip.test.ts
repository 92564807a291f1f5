import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../agent/config/index.js";
import { decideEip } from "../../agent/routes/eip.js";

const ME = "eni-mine";

describe("egress: the route's Elastic IP follows the holder", () => {
  const cases: [string, { networkInterfaceId?: string; instanceId?: string }, boolean, boolean, RegExp][] = [
    ["already on this ENI: nothing", { networkInterfaceId: ME }, false, false, /already associated/],
    ["already here, re-assert: associate again (the read may be stale)", { networkInterfaceId: ME }, true, true, /re-assert/],
    ["not associated: associate", {}, false, true, /not associated/],
    ["on the previous holder: take it over", { networkInterfaceId: "eni-old", instanceId: "i-old" }, false, true, /eni-old \(i-old\)/],
  ];
  it.each(cases)("%s", (_name, state, force, associate, reason) => {
    const d = decideEip({ allocationId: "eipalloc-1", ...state }, ME, force);
    expect(d.associate).toBe(associate);
    expect(d.reason).toMatch(reason);
  });

  const problemsOf = (yaml: string): string => {
    try {
      parseConfig(yaml, "t.yaml");
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.problems.map((p) => `${p.path}: ${p.message}`).join("\n");
    }
    return "";
  };

  it("validate refuses two routes naming one Elastic IP", () => {
    const yaml = `cluster: prod
routes:
  - { name: a, table: { id: rtb-0abc }, destination: 0.0.0.0/0, eip: eipalloc-0123456789abcdef0 }
  - { name: b, table: { id: rtb-0abd }, destination: 0.0.0.0/0, eip: eipalloc-0123456789abcdef0 }
`;
    expect(problemsOf(yaml)).toMatch(/routes\[1\]\.eip: Elastic IP eipalloc-0123456789abcdef0 is already named by routes\[0\] \("a"\)/);
  });

  it("validate refuses an address where an allocation id belongs", () => {
    const yaml = `cluster: prod
routes:
  - { name: c, table: { id: rtb-0abe }, destination: 0.0.0.0/0, eip: 203.0.113.7 }
`;
    expect(problemsOf(yaml)).toMatch(/routes\[0\]\.eip: not an Elastic IP allocation id/);
  });
});
