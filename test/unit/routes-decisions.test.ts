import { describe, expect, it } from "vitest";
import type { TableSelector } from "../../agent/config/index.js";
import { decideClaim, decideRelease } from "../../agent/routes/decide.js";
import { summarizeClaim } from "../../agent/routes/controller.js";
import { findRoute, isOurs, toTableSnapshot, type RouteEntry, type TableSnapshot } from "../../agent/routes/route-state.js";
import { describeSelector, matchesSelector, selectorIds, selectorSubnets } from "../../agent/routes/selector.js";
import { selectTables } from "../../agent/routes/resolve.js";

const me = { instanceId: "i-0000000000000000a", eniId: "eni-0000000000000000a" };

function table(id: string, extra: Partial<TableSnapshot> = {}): TableSnapshot {
  return { id, vpcId: "vpc-1", main: false, subnetIds: [], tags: {}, routes: [], ...extra };
}

const tables = [
  table("rtb-main", { main: true, tags: { Name: "main" } }),
  table("rtb-a", { subnetIds: ["subnet-a"], tags: { Name: "private-a", tier: "private", az: "a" } }),
  table("rtb-b", { subnetIds: ["subnet-b"], tags: { Name: "private-b", tier: "private", az: "b" } }),
  table("rtb-pub", { subnetIds: ["subnet-pub"], tags: { Name: "public", tier: "public" } }),
];

function pick(selector: TableSelector, implicit: string[] = []): string[] {
  return selectTables(tables, { table: selector }, { implicitlyMainSubnets: new Set(implicit) });
}

describe("table selectors", () => {
  it("by id, tags, subnet and main", () => {
    expect(pick({ id: "rtb-b" })).toEqual(["rtb-b"]);
    expect(pick({ tags: { tier: "private" } })).toEqual(["rtb-a", "rtb-b"]);
    expect(pick({ tags: { tier: "private", az: "b" } })).toEqual(["rtb-b"]);
    expect(pick({ tags: { tier: "nope" } })).toEqual([]);
    expect(pick({ subnet: "subnet-a" })).toEqual(["rtb-a"]);
    expect(pick({ main: true })).toEqual(["rtb-main"]);
  });

  it("a subnet without an explicit association is served by the main table", () => {
    expect(pick({ subnet: "subnet-loose" })).toEqual([]);
    expect(pick({ subnet: "subnet-loose" }, ["subnet-loose"])).toEqual(["rtb-main"]);
  });

  it("and / or / not, nested", () => {
    expect(pick({ and: [{ tags: { tier: "private" } }, { not: { subnet: "subnet-a" } }] })).toEqual(["rtb-b"]);
    expect(pick({ or: [{ main: true }, { tags: { tier: "public" } }] })).toEqual(["rtb-main", "rtb-pub"]);
    expect(pick({ not: { or: [{ main: true }, { tags: { tier: "public" } }] } })).toEqual(["rtb-a", "rtb-b"]);
    expect(pick({ and: [{ id: "rtb-a" }, { id: "rtb-b" }] })).toEqual([]);
  });

  it("tag values must match exactly, and a missing tag never matches", () => {
    expect(matchesSelector(table("rtb-x", { tags: { tier: "" } }), { tags: { tier: "private" } })).toBe(false);
    expect(matchesSelector(table("rtb-x", { tags: { tier: "private " } }), { tags: { tier: "private" } })).toBe(false);
  });

  it("lists the ids and subnets named at any depth, and reads in one line", () => {
    const selector: TableSelector = { and: [{ or: [{ id: "rtb-1" }, { subnet: "subnet-9" }] }, { not: { id: "rtb-2" } }] };
    expect(selectorIds(selector)).toEqual(["rtb-1", "rtb-2"]);
    expect(selectorSubnets(selector)).toEqual(["subnet-9"]);
    expect(describeSelector(selector)).toBe("and(or(rtb-1, subnet subnet-9), not(rtb-2))");
  });
});

describe("is this route ours", () => {
  const route = (fields: Partial<RouteEntry>): RouteEntry => ({ destination: "0.0.0.0/0", state: "active", ...fields });
  it("accepts the instance id or the ENI id (AWS fills both, moto one)", () => {
    expect(isOurs(route({ instanceId: me.instanceId }), me)).toBe(true);
    expect(isOurs(route({ eniId: me.eniId }), me)).toBe(true);
    expect(isOurs(route({ instanceId: me.instanceId, eniId: me.eniId }), me)).toBe(true);
    expect(isOurs(route({ instanceId: "i-0000000000000000b", eniId: "eni-0000000000000000b" }), me)).toBe(false);
    expect(isOurs(route({ otherTarget: "igw-1" }), me)).toBe(false);
  });
});

describe("claim decision", () => {
  it("creates an absent route", () => {
    expect(decideClaim(undefined, me)).toEqual({ write: "create", reason: "route absent" });
  });
  it("replaces a foreign route, naming its target", () => {
    expect(decideClaim({ destination: "0.0.0.0/0", state: "active", instanceId: "i-0000000000000000b" }, me)).toEqual({ write: "replace", reason: "points at i-0000000000000000b", from: "i-0000000000000000b" });
    expect(decideClaim({ destination: "::/0", state: "active", otherTarget: "igw-1" }, me)).toMatchObject({ write: "replace", from: "igw-1" });
  });
  it("replaces a blackholed route, even one naming us", () => {
    expect(decideClaim({ destination: "0.0.0.0/0", state: "blackhole", instanceId: "i-0000000000000000b" }, me)).toMatchObject({ write: "replace" });
    expect(decideClaim({ destination: "0.0.0.0/0", state: "blackhole", instanceId: me.instanceId }, me)).toMatchObject({ write: "replace" });
  });
  it("leaves our own route alone", () => {
    expect(decideClaim({ destination: "0.0.0.0/0", state: "active", eniId: me.eniId }, me)).toEqual({ write: "none", reason: "already ours" });
  });
});

describe("release decision", () => {
  const ours: RouteEntry = { destination: "0.0.0.0/0", state: "active", instanceId: me.instanceId };
  it("keep never writes; delete only a route still ours", () => {
    expect(decideRelease(ours, me, "keep").write).toBe("none");
    expect(decideRelease(ours, me, "delete").write).toBe("delete");
    expect(decideRelease({ ...ours, instanceId: "i-0000000000000000b" }, me, "delete").write).toBe("none");
    expect(decideRelease(undefined, me, "delete").write).toBe("none");
  });
});

describe("route table snapshots from the EC2 shape", () => {
  it("reads IPv4 and IPv6 destinations canonically, targets, blackhole state, main and subnets", () => {
    const snapshot = toTableSnapshot({
      RouteTableId: "rtb-1",
      VpcId: "vpc-1",
      Associations: [{ Main: true }, { SubnetId: "subnet-1", Main: false }],
      Tags: [{ Key: "Name", Value: "x" }],
      Routes: [
        { DestinationCidrBlock: "10.0.0.0/16", GatewayId: "local", State: "active" },
        { DestinationIpv6CidrBlock: "2600:1F18:0:0::/56", InstanceId: "i-1", State: "blackhole" },
        { DestinationPrefixListId: "pl-1", GatewayId: "vpce-1" },
      ],
    });
    expect(snapshot).toMatchObject({ id: "rtb-1", main: true, subnetIds: ["subnet-1"], tags: { Name: "x" } });
    expect(snapshot.routes).toHaveLength(2);
    expect(findRoute(snapshot, "2600:1f18::/56")).toEqual({ destination: "2600:1f18::/56", instanceId: "i-1", state: "blackhole" });
    expect(findRoute(snapshot, "0.0.0.0/0")).toBeUndefined();
  });
});

describe("claim summary", () => {
  it("a closed gate or dry run outranks writes; replaced outranks created", () => {
    expect(summarizeClaim(["replaced", "skipped-gate"])).toBe("skipped-gate");
    expect(summarizeClaim(["dry-run", "unchanged"])).toBe("dry-run");
    expect(summarizeClaim(["created", "replaced"])).toBe("replaced");
    expect(summarizeClaim(["unchanged", "created"])).toBe("created");
    expect(summarizeClaim(["unchanged", "missing"])).toBe("unchanged");
  });
});
