import { describe, expect, it } from "vitest";
import type { TableSelector } from "../../agent/config/index.js";
import type { TableSnapshot } from "../../agent/routes/route-state.js";
import { reresolveTables } from "../../agent/routes/resolve.js";
import { selectorIdCover } from "../../agent/routes/selector.js";

/** Live selectors (issue #21): pure re-resolution of every route's tables from one describe. */

function table(id: string, extra: Partial<TableSnapshot> = {}): TableSnapshot {
  return { id, vpcId: "vpc-1", main: false, subnetIds: [], tags: {}, routes: [], ...extra };
}
const route = (name: string, selector: TableSelector, destination = "0.0.0.0/0") => ({ name, table: selector, destination });
const nat = route("nat", { tags: { rl: "nat" } });

describe("live: re-resolving selectors at every reconcile", () => {
  it("live: a table tagged after start starts matching; an untagged one stops; the rest stays", () => {
    const before = new Map([["nat", ["rtb-a", "rtb-b"]]]);
    const now = [table("rtb-a", { tags: { rl: "nat" } }), table("rtb-b", { tags: {} }), table("rtb-c", { tags: { rl: "nat" } })];
    const live = reresolveTables(now, [nat], "vpc-1", new Set(), before);
    expect(live.tables.get("nat")).toEqual(["rtb-a", "rtb-c"]);
    expect(live.started).toEqual([{ route: "nat", table: "rtb-c" }]);
    expect(live.stopped).toEqual([{ route: "nat", table: "rtb-b" }]);
    expect(live.conflicts).toEqual([]);
  });

  it("live: a deleted table stops matching; nothing changes when nothing changed", () => {
    const before = new Map([["nat", ["rtb-a", "rtb-b"]]]);
    const gone = reresolveTables([table("rtb-a", { tags: { rl: "nat" } })], [nat], "vpc-1", new Set(), before);
    expect(gone.stopped).toEqual([{ route: "nat", table: "rtb-b" }]);
    const same = reresolveTables([table("rtb-a", { tags: { rl: "nat" } })], [nat], "vpc-1", new Set(), new Map([["nat", ["rtb-a"]]]));
    expect([same.started, same.stopped]).toEqual([[], []]);
  });

  it("live: a table of another VPC never matches, whatever the describe returned", () => {
    const foreign = table("rtb-x", { vpcId: "vpc-2", tags: { rl: "nat" } });
    const live = reresolveTables([foreign, table("rtb-a", { tags: { rl: "nat" } })], [nat, route("by-id", { id: "rtb-x" }, "10.9.0.0/16")], "vpc-1", new Set(), new Map());
    expect(live.tables.get("nat")).toEqual(["rtb-a"]);
    expect(live.tables.get("by-id")).toEqual([]);
  });

  it("live: subnet selectors follow associations; a subnet losing its association falls to the main table", () => {
    const bySubnet = route("s", { subnet: "subnet-1" });
    const associated = reresolveTables([table("rtb-main", { main: true }), table("rtb-a", { subnetIds: ["subnet-1"] })], [bySubnet], "vpc-1", new Set(["subnet-1"]), new Map());
    expect(associated.tables.get("s")).toEqual(["rtb-a"]);
    const loose = reresolveTables([table("rtb-main", { main: true }), table("rtb-a")], [bySubnet], "vpc-1", new Set(["subnet-1"]), new Map([["s", ["rtb-a"]]]));
    expect(loose.tables.get("s")).toEqual(["rtb-main"]);
    expect(loose.stopped).toEqual([{ route: "s", table: "rtb-a" }]);
  });

  it("live: two routes newly matching one table and destination: the route that had it keeps it, a newcomer gets none", () => {
    const other = route("other", { tags: { tier: "private" } });
    const tables = [table("rtb-a", { tags: { rl: "nat", tier: "private" } })];
    const kept = reresolveTables(tables, [nat, other], "vpc-1", new Set(), new Map([["nat", ["rtb-a"]], ["other", []]]));
    expect(kept.tables.get("nat")).toEqual(["rtb-a"]);
    expect(kept.tables.get("other")).toEqual([]);
    expect(kept.conflicts).toEqual([{ table: "rtb-a", destination: "0.0.0.0/0", routes: ["nat", "other"], keptBy: "nat" }]);
    const neither = reresolveTables(tables, [nat, other], "vpc-1", new Set(), new Map());
    expect([neither.tables.get("nat"), neither.tables.get("other")]).toEqual([[], []]);
    // Other destinations in the same table are no conflict.
    const v6 = reresolveTables(tables, [nat, route("v6", { tags: { tier: "private" } }, "::/0")], "vpc-1", new Set(), new Map());
    expect(v6.conflicts).toEqual([]);
  });
});

describe("live: the describe covers every selector", () => {
  it.each<[string, TableSelector, string[] | undefined]>([
    ["id", { id: "rtb-1" }, ["rtb-1"]],
    ["tags", { tags: { a: "b" } }, undefined],
    ["subnet", { subnet: "subnet-1" }, undefined],
    ["main", { main: true }, undefined],
    ["not id", { not: { id: "rtb-1" } }, undefined],
    ["or of ids", { or: [{ id: "rtb-1" }, { id: "rtb-2" }] }, ["rtb-1", "rtb-2"]],
    ["or with tags", { or: [{ id: "rtb-1" }, { tags: { a: "b" } }] }, undefined],
    ["and with one id", { and: [{ tags: { a: "b" } }, { id: "rtb-3" }] }, ["rtb-3"]],
    ["and of tags", { and: [{ tags: { a: "b" } }, { main: true }] }, undefined],
  ])("live: %s", (_name, selector, cover) => {
    expect(selectorIdCover(selector)).toEqual(cover);
  });
});
