import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, type ScalarTag, type CollectionTag, YAMLMap, YAMLSeq } from "yaml";

/** The repository root (test/support/ → ../..). */
export const REPO = join(import.meta.dirname, "..", "..");

/** CloudFormation's short-form intrinsic tags (!Ref, !Sub, ...) as their long form. */
const SHORT_FORMS = ["Ref", "Condition", "Base64", "Cidr", "FindInMap", "GetAtt", "GetAZs", "ImportValue", "Join", "Select", "Split", "Sub", "Transform", "And", "Equals", "If", "Not", "Or"];

function longName(short: string): string {
  return short === "Ref" || short === "Condition" ? short : `Fn::${short}`;
}

const cfnTags: (ScalarTag | CollectionTag)[] = SHORT_FORMS.flatMap((short) => {
  const key = longName(short);
  const scalar: ScalarTag = {
    tag: `!${short}`,
    resolve: (value: string) => (short === "GetAtt" ? { [key]: value.split(".", 2) } : { [key]: value }),
  };
  const seq: CollectionTag = {
    tag: `!${short}`,
    collection: "seq",
    nodeClass: YAMLSeq,
    resolve: (value) => ({ [key]: (value as YAMLSeq).toJSON() }) as unknown as YAMLSeq,
  };
  const map: CollectionTag = {
    tag: `!${short}`,
    collection: "map",
    nodeClass: YAMLMap,
    resolve: (value) => ({ [key]: (value as YAMLMap).toJSON() }) as unknown as YAMLMap,
  };
  return [scalar, seq, map];
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

/** Parses a CloudFormation YAML template into its JSON form (short tags expanded). */
export function parseTemplate(text: string): Json {
  return parse(text, { customTags: cfnTags, maxAliasCount: -1 });
}

export function loadTemplate(name: string): Json {
  return parseTemplate(readFileSync(join(REPO, "cloudformation", name), "utf8"));
}

/** Pseudo parameters and parameters used to resolve intrinsics. */
export interface ResolveContext {
  params: Record<string, string>;
  conditions?: Record<string, boolean>;
}

const NO_VALUE = Symbol("AWS::NoValue");

/**
 * Evaluates the intrinsics this project's templates use (Ref, Sub, If, Join, Select, Split,
 * Equals, Not, And, Or, Condition) against parameter values; Fn::If branches returning
 * AWS::NoValue are dropped from lists and objects, as CloudFormation does.
 */
export function resolve(node: Json, ctx: ResolveContext): Json {
  const out = resolveInner(node, ctx);
  return out === NO_VALUE ? undefined : out;
}

function conditionValue(name: string, ctx: ResolveContext): boolean {
  const v = ctx.conditions?.[name];
  if (v === undefined) throw new Error(`unknown condition ${name}`);
  return v;
}

function ref(name: string, ctx: ResolveContext): Json {
  if (name === "AWS::NoValue") return NO_VALUE;
  const v = ctx.params[name];
  if (v === undefined) throw new Error(`unresolved Ref ${name}`);
  return v;
}

function sub(template: string, vars: Record<string, Json>, ctx: ResolveContext): string {
  return template.replace(/\$\{(!?)([^}]+)\}/g, (whole, bang: string, name: string) => {
    if (bang) return `\${${name}}`;
    if (name in vars) return String(vars[name]);
    return String(ref(name, ctx));
  });
}

function resolveInner(node: Json, ctx: ResolveContext): Json {
  if (Array.isArray(node)) return node.map((n) => resolveInner(n, ctx)).filter((n) => n !== NO_VALUE);
  if (node === null || typeof node !== "object") return node;
  const keys = Object.keys(node);
  if (keys.length === 1) {
    const [k] = keys as [string];
    const v = node[k];
    switch (k) {
      case "Ref":
        return ref(v, ctx);
      case "Condition":
        if (typeof v === "string") return conditionValue(v, ctx);
        break;
      case "Fn::Sub":
        if (typeof v === "string") return sub(v, {}, ctx);
        return sub(v[0], resolveInner(v[1], ctx), ctx);
      case "Fn::If":
        return resolveInner(conditionValue(v[0], ctx) ? v[1] : v[2], ctx);
      case "Fn::Join":
        return (resolveInner(v[1], ctx) as Json[]).join(v[0]);
      case "Fn::Select":
        return (resolveInner(v[1], ctx) as Json[])[Number(resolveInner(v[0], ctx))];
      case "Fn::Split":
        return String(resolveInner(v[1], ctx)).split(v[0]);
      case "Fn::Equals":
        return resolveInner(v[0], ctx) === resolveInner(v[1], ctx);
      case "Fn::Not":
        return !resolveInner(v[0], ctx);
      case "Fn::And":
        return (v as Json[]).every((x) => resolveInner(x, ctx));
      case "Fn::Or":
        return (v as Json[]).some((x) => resolveInner(x, ctx));
      default:
        break;
    }
  }
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(node)) {
    const r = resolveInner(v, ctx);
    if (r !== NO_VALUE) out[k] = r;
  }
  return out;
}

/** Evaluates a template's Conditions for the given parameters (defaults filled in). */
export function evaluateConditions(template: Json, params: Record<string, string>): ResolveContext {
  const full: Record<string, string> = {};
  for (const [name, p] of Object.entries<Json>(template.Parameters ?? {})) {
    if (p.Default !== undefined) full[name] = String(p.Default);
  }
  Object.assign(full, params);
  const ctx: ResolveContext = { params: full, conditions: {} };
  const pending = new Map<string, Json>(Object.entries(template.Conditions ?? {}));
  // Conditions may reference each other: evaluate until every one resolves.
  for (let pass = 0; pending.size > 0 && pass < 20; pass++) {
    for (const [name, expr] of pending) {
      try {
        ctx.conditions![name] = resolveInner(expr, ctx) as boolean;
        pending.delete(name);
      } catch {
        // depends on a condition not evaluated yet
      }
    }
  }
  if (pending.size > 0) throw new Error(`conditions not resolvable: ${[...pending.keys()].join(", ")}`);
  return ctx;
}
