import type { TableSelector } from "../config/schema.js";
import type { TableSnapshot } from "./route-state.js";

export interface SelectorContext {
  /**
   * Subnets of this VPC that have no explicit table association: EC2 routes them through
   * the main table, so `{subnet}` matches the main table for them.
   */
  readonly implicitlyMainSubnets: ReadonlySet<string>;
}

const NO_IMPLICIT: SelectorContext = { implicitlyMainSubnets: new Set() };

export function matchesSelector(table: Pick<TableSnapshot, "id" | "main" | "subnetIds" | "tags">, selector: TableSelector, ctx: SelectorContext = NO_IMPLICIT): boolean {
  if ("id" in selector) return table.id === selector.id;
  if ("tags" in selector) return Object.entries(selector.tags).every(([k, v]) => table.tags[k] === v);
  if ("subnet" in selector) return table.subnetIds.includes(selector.subnet) || (table.main && ctx.implicitlyMainSubnets.has(selector.subnet));
  if ("main" in selector) return table.main;
  if ("and" in selector) return selector.and.every((s) => matchesSelector(table, s, ctx));
  if ("or" in selector) return selector.or.some((s) => matchesSelector(table, s, ctx));
  return !matchesSelector(table, selector.not, ctx);
}

/** Every `{id}` a selector names, at any depth: each must exist in this VPC. */
export function selectorIds(selector: TableSelector): string[] {
  if ("id" in selector) return [selector.id];
  if ("and" in selector) return selector.and.flatMap(selectorIds);
  if ("or" in selector) return selector.or.flatMap(selectorIds);
  if ("not" in selector) return selectorIds(selector.not);
  return [];
}

/** Every `{subnet}` a selector names, at any depth. */
export function selectorSubnets(selector: TableSelector): string[] {
  if ("subnet" in selector) return [selector.subnet];
  if ("and" in selector) return selector.and.flatMap(selectorSubnets);
  if ("or" in selector) return selector.or.flatMap(selectorSubnets);
  if ("not" in selector) return selectorSubnets(selector.not);
  return [];
}

/** The selector in one line, for messages: `and(tags{role=nat}, not(main))`. */
export function describeSelector(selector: TableSelector): string {
  if ("id" in selector) return selector.id;
  if ("tags" in selector) return `tags{${Object.entries(selector.tags).map(([k, v]) => `${k}=${v}`).join(",")}}`;
  if ("subnet" in selector) return `subnet ${selector.subnet}`;
  if ("main" in selector) return "main";
  if ("and" in selector) return `and(${selector.and.map(describeSelector).join(", ")})`;
  if ("or" in selector) return `or(${selector.or.map(describeSelector).join(", ")})`;
  return `not(${describeSelector(selector.not)})`;
}

/**
 * Table ids that cover every table the selector can match, or undefined when it can match
 * any table of the VPC: `{id}` is its id; `and` is covered by any covered member (the
 * smallest); `or` only when every member is covered; tags, subnet, main and not cover nothing.
 * The reconcile's one DescribeRouteTables filters on these ids when every route has a cover,
 * else on the VPC alone.
 */
export function selectorIdCover(selector: TableSelector): string[] | undefined {
  if ("id" in selector) return [selector.id];
  if ("and" in selector) {
    const covers = selector.and.map(selectorIdCover).filter((c): c is string[] => c !== undefined);
    return covers.length ? covers.reduce((a, b) => (b.length < a.length ? b : a)) : undefined;
  }
  if ("or" in selector) {
    const covers = selector.or.map(selectorIdCover);
    return covers.every((c): c is string[] => c !== undefined) ? [...new Set(covers.flat())] : undefined;
  }
  return undefined;
}
