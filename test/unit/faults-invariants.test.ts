import { describe, expect, it } from "vitest";
import type { ProxyCall } from "../support/fault-proxy.js";
import { routeChanges, routeWrites, splitBrainWrites } from "../support/faults/invariants.js";
import { holderAt, type Claim } from "../support/faults/systems.js";

const write = (caller: string, time: number, instance: string, status = 200): ProxyCall => ({
  time,
  caller,
  service: "ec2",
  action: "ReplaceRoute",
  params: { RouteTableId: "rtb-1", InstanceId: instance },
  mutating: true,
  status,
});

const claims: Claim[] = [
  { host: "h1", t: 100, kind: "acquire" },
  { host: "h2", t: 500, kind: "acquire" },
  { host: "h2", t: 900, kind: "release" },
];

describe("fault-suite invariants", () => {
  it("names the holder from claims: the latest acquire not released since", () => {
    expect(holderAt(claims, 50)).toBeUndefined();
    expect(holderAt(claims, 200)).toBe("h1");
    expect(holderAt(claims, 600)).toBe("h2");
    expect(holderAt(claims, 950)).toBeUndefined();
  });

  it("counts a write by a holder that another host has since replaced as split-brain", () => {
    const writes = [write("h1", 150, "i-1"), write("h2", 510, "i-2"), write("h1", 700, "i-1"), write("h2", 1000, "i-2"), write("h3", 120, "i-3")];
    expect(splitBrainWrites(writes, claims).map((w) => `${w.caller}@${w.time}`)).toEqual(["h1@700", "h2@1000", "h3@120"]);
  });

  it("counts route target changes from successful writes only, so a flip back is two changes", () => {
    expect(routeChanges([write("h2", 1, "i-2"), write("h2", 2, "i-2")], "i-1")).toBe(1);
    expect(routeChanges([write("h2", 1, "i-2"), write("h1", 2, "i-1")], "i-1")).toBe(2);
    expect(routeChanges([write("h2", 1, "i-2", 503)], "i-1")).toBe(0);
  });

  it("keeps only route writes to the table under test", () => {
    const other = { ...write("h1", 1, "i-1"), params: { RouteTableId: "rtb-2", InstanceId: "i-1" } };
    const describe = { ...write("h1", 1, "i-1"), action: "DescribeRouteTables", mutating: false };
    expect(routeWrites([write("h1", 1, "i-1"), other, describe], "rtb-1")).toHaveLength(1);
  });
});
