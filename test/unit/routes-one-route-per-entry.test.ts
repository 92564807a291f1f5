import { describe, expect, it } from "vitest";
import { EXIT, ExitError } from "../../agent/exit-codes.js";
import { assertOneRoutePerEntry } from "../../agent/routes/index.js";

describe("one route per table and destination, after table resolution", () => {
  it("two routes whose selectors resolve to one table with one destination are refused, both named", () => {
    const routes = [
      { name: "by-tag", destination: "0.0.0.0/0" },
      { name: "by-id", destination: "0.0.0.0/0" },
    ];
    const tables = new Map([
      ["by-tag", ["rtb-1", "rtb-2"]],
      ["by-id", ["rtb-2"]],
    ]);
    let thrown: unknown;
    try {
      assertOneRoutePerEntry(routes, tables);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ExitError);
    expect((thrown as ExitError).exitCode).toBe(EXIT.config);
    expect((thrown as ExitError).message).toBe('routes "by-tag" and "by-id" both manage 0.0.0.0/0 in rtb-2 (their table selectors resolve to the same table): give each table and destination one route');
  });

  it("the same destination in different tables, or different destinations in one table, are fine", () => {
    const routes = [
      { name: "a", destination: "0.0.0.0/0" },
      { name: "b", destination: "0.0.0.0/0" },
      { name: "c", destination: "10.0.0.0/8" },
    ];
    const tables = new Map([
      ["a", ["rtb-1"]],
      ["b", ["rtb-2"]],
      ["c", ["rtb-1", "rtb-2"]],
    ]);
    expect(() => assertOneRoutePerEntry(routes, tables)).not.toThrow();
  });
});
