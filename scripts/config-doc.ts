import { stringify } from "yaml";
import type { z } from "zod";
import { PROFILE_DEFAULTS } from "../agent/config/load.js";
import { configSchema, tableSelectorSchema } from "../agent/config/schema.js";

/**
 * Renders docs/configuration.md from the zod schema in agent/config/schema.ts: key paths,
 * types, defaults and the `.describe()` texts. Only the table-selector meanings and the
 * cross-field rules below are prose kept here, because the schema cannot carry them.
 */

// zod v4's classic types expose `def`, `type` and `description`; the walk needs only these.
type AnySchema = z.ZodType & { def: Record<string, unknown>; type: string; description?: string };

/** One row of a reference table. */
export interface FieldDoc {
  path: string;
  type: string;
  default: string;
  description: string;
}

/** One table: a heading, an optional introduction and its rows. */
export interface SectionDoc {
  title: string;
  intro?: string;
  fields: FieldDoc[];
}

const SELECTOR_MEANINGS: Record<string, { meaning: string; example: unknown }> = {
  id: { meaning: "The route table with this id.", example: { id: "rtb-0123abcd" } },
  tags: { meaning: "Every table carrying all of these tags (key: value).", example: { tags: { Name: "private-a" } } },
  subnet: { meaning: "The table associated with this subnet.", example: { subnet: "subnet-0123abcd" } },
  main: { meaning: "The VPC's main route table.", example: { main: true } },
  and: { meaning: "Tables matched by every selector in the list.", example: { and: [{ tags: { tier: "private" } }, { not: { main: true } }] } },
  or: { meaning: "Tables matched by any selector in the list.", example: { or: [{ id: "rtb-0123abcd" }, { id: "rtb-4567cdef" }] } },
  not: { meaning: "Tables in the VPC that the inner selector does not match.", example: { not: { main: true } } },
};

const CROSS_FIELD_RULES = [
  "`election.lockDelay` ≥ `aws.writeTimeout` + `election.fenceMargin` (a new holder must not start while the old holder's last write can still land).",
  "`election.livenessTtl` < `election.sessionTtl`.",
  "Route names are unique, and no two routes share the same table selector and destination.",
  "Every name in `routes[].checks` is defined under `checks`.",
];

function field(schema: AnySchema, key: string): AnySchema {
  return (schema.def.shape as Record<string, AnySchema>)[key] as AnySchema;
}

/** Strips optional/default/prefault wrappers, collecting the default and whether a value is required. */
function unwrap(schema: AnySchema): { core: AnySchema; default: string; description: string } {
  let current = schema;
  let defaultText = "required";
  let description = schema.description ?? "";
  for (;;) {
    description ||= current.description ?? "";
    if (current.type === "optional") {
      if (defaultText === "required") defaultText = "—";
      current = current.def.innerType as AnySchema;
    } else if (current.type === "default" || current.type === "prefault") {
      defaultText = formatDefault(current.def.defaultValue);
      current = current.def.innerType as AnySchema;
    } else {
      return { core: current, default: defaultText, description };
    }
  }
}

function formatDefault(value: unknown): string {
  if (value !== null && typeof value === "object" && Object.keys(value).length === 0) return Array.isArray(value) ? "`[]`" : "`{}`";
  return `\`${JSON.stringify(value)}\``;
}

function humanMs(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function isSelector(schema: AnySchema): boolean {
  return schema.type === "lazy" && schema.def.getter === (tableSelectorSchema as unknown as AnySchema).def.getter;
}

/** A string transformed by the schema is recognised by what it accepts: durations, then CIDRs. */
function describeTransformedString(schema: AnySchema): string {
  const asDuration = schema.safeParse("1s");
  const huge = schema.safeParse("1000000h");
  const range = huge.success ? undefined : /\[(\d+) ms, (\d+) ms\]/.exec(huge.error.issues[0]?.message ?? "");
  if (range || (asDuration.success && typeof asDuration.data === "number")) {
    return range ? `duration (${humanMs(Number(range[1]))}–${humanMs(Number(range[2]))})` : "duration";
  }
  if (schema.safeParse("10.0.0.0/8").success && schema.safeParse("::/0").success) return "CIDR";
  return "string";
}

function describeString(schema: AnySchema): string {
  const checks = (schema.def.checks ?? []) as { _zod: { def: { format?: string; pattern?: RegExp } } }[];
  const patterns = checks.flatMap((c) => (c._zod.def.format === "regex" && c._zod.def.pattern ? [c._zod.def.pattern.source] : []));
  if (schema.type === "string" && (schema as unknown as { format?: string | null }).format === "url") return "URL";
  return patterns.length ? `string matching ${patterns.map((p) => `\`${p}\``).join(" and ")}` : "string";
}

function describeNumber(schema: AnySchema): string {
  const n = schema as unknown as { isInt: boolean; minValue: number | null; maxValue: number | null };
  const lo = n.minValue !== null && n.minValue > Number.MIN_SAFE_INTEGER ? n.minValue : undefined;
  const hi = n.maxValue !== null && n.maxValue < Number.MAX_SAFE_INTEGER ? n.maxValue : undefined;
  const kind = n.isInt ? "integer" : "number";
  if (lo !== undefined && hi !== undefined) return `${kind} (${lo}–${hi})`;
  if (lo !== undefined) return `${kind} (≥ ${lo})`;
  if (hi !== undefined) return `${kind} (≤ ${hi})`;
  return kind;
}

/** A short type name for a schema, as an operator reads it. */
export function describeType(schema: AnySchema): string {
  const { core } = unwrap(schema);
  switch (core.type) {
    case "string":
      return describeString(core);
    case "number":
      return describeNumber(core);
    case "boolean":
      return "boolean";
    case "enum":
      return `one of ${Object.values(core.def.entries as Record<string, string>).map((v) => `\`${v}\``).join(", ")}`;
    case "literal":
      return (core.def.values as unknown[]).map((v) => `\`${JSON.stringify(v)}\``).join(", ");
    case "pipe":
      return describeTransformedString(core);
    case "array":
      return `list of ${describeType(core.def.element as AnySchema)}`;
    case "record":
      return `map of ${describeType(core.def.keyType as AnySchema)} → ${describeType(core.def.valueType as AnySchema)}`;
    case "lazy":
      return isSelector(core) ? "[table selector](#table-selectors)" : describeType((core.def.getter as () => AnySchema)());
    case "union":
      return (core.def.options as AnySchema[]).map(describeType).join(" or ");
    case "object":
      return "object";
    default:
      return core.type;
  }
}

function rowsOf(object: AnySchema, prefix: string): FieldDoc[] {
  return Object.keys(object.def.shape as object).flatMap((key): FieldDoc[] => {
    const schema = field(object, key);
    const { core, default: def, description } = unwrap(schema);
    // A nested group (observe.cloudwatch) is documented key by key.
    if (core.type === "object" && !isSelector(schema)) return rowsOf(core, `${prefix}${key}.`);
    const discriminator = core.type === "literal" && !description ? "Selects this kind." : description;
    return [{ path: `${prefix}${key}`, type: describeType(schema), default: def, description: discriminator }];
  });
}

function checkSections(checks: AnySchema): SectionDoc[] {
  const record = unwrap(checks).core;
  const union = unwrap(record.def.valueType as AnySchema).core;
  return (union.def.options as AnySchema[]).map((option) => {
    const typeName = String((unwrap(field(option, "type")).core.def.values as unknown[])[0]);
    return {
      title: `Check type \`${typeName}\``,
      fields: rowsOf(option, "checks.<name>."),
    };
  });
}

/** The reference as sections, in schema order. */
export function describeConfig(): SectionDoc[] {
  const root = configSchema as unknown as AnySchema;
  const topLevel: SectionDoc = { title: "Top level", fields: [] };
  const sections: SectionDoc[] = [topLevel];
  for (const key of Object.keys(root.def.shape as object)) {
    const schema = field(root, key);
    const { core, default: def, description } = unwrap(schema);
    if (core.type === "object") {
      sections.push({ title: `\`${key}\``, intro: description || undefined, fields: rowsOf(core, `${key}.`) });
    } else if (core.type === "array" && unwrap(core.def.element as AnySchema).core.type === "object") {
      const required = def === "required" ? " Required, at least one." : "";
      sections.push({ title: `\`${key}[]\``, intro: `${description}${required}`, fields: rowsOf(unwrap(core.def.element as AnySchema).core, `${key}[].`) });
    } else if (core.type === "record" && unwrap(core.def.valueType as AnySchema).core.type === "union") {
      topLevel.fields.push({ path: key, type: `map of name → check`, default: def, description });
      sections.push(...checkSections(schema));
    } else {
      topLevel.fields.push({ path: key, type: describeType(schema), default: def, description });
    }
  }
  return sections;
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

function table(fields: FieldDoc[]): string {
  const rows = fields.map((f) => `| \`${cell(f.path)}\` | ${cell(f.type)} | ${cell(f.default)} | ${cell(f.description)} |`);
  return ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |", ...rows].join("\n");
}

function selectorSection(): string {
  const union = (tableSelectorSchema as unknown as AnySchema & { def: { getter: () => AnySchema } }).def.getter();
  const rows = (union.def.options as AnySchema[]).map((option) => {
    const key = Object.keys(option.def.shape as object)[0] as string;
    const known = SELECTOR_MEANINGS[key];
    if (!known) throw new Error(`table selector form "${key}" has no meaning in scripts/config-doc.ts`);
    if (!tableSelectorSchema.safeParse(known.example).success) throw new Error(`the example of table selector form "${key}" does not validate`);
    const meaning = option.description ?? known.meaning;
    return `| \`${key}\` | ${cell(describeType(field(option, key)))} | ${cell(meaning)} | \`${cell(stringify(known.example, { collectionStyle: "flow" }).trim())}\` |`;
  });
  return [
    "## Table selectors",
    "",
    "`routes[].table` says which route table(s) a route is written to. It is always limited to the instance's own VPC; one selector can match several tables (the route is then written to each).",
    "",
    "| Form | Value | Matches | Example |",
    "| --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

function profileSection(): string {
  const rows = Object.entries(PROFILE_DEFAULTS).map(
    ([name, d]) => `| \`${name}\` | ${humanMs(d.lockDelayMs)} | ${humanMs(d.writeTimeoutMs)} |`,
  );
  return [
    "## Profiles",
    "",
    "`election.profile` sets the defaults of `election.lockDelay` and `aws.writeTimeout` when they are not given explicitly:",
    "",
    "| Profile | `election.lockDelay` | `aws.writeTimeout` |",
    "| --- | --- | --- |",
    ...rows,
  ].join("\n");
}

/** The whole docs/configuration.md text. */
export function renderConfigDoc(): string {
  const parts = [
    "# Configuration reference",
    "",
    "<!-- Generated by `npm run docs:config` (scripts/gen-config-doc.ts) from agent/config/schema.ts. Do not edit by hand. -->",
    "",
    "routeleader reads one YAML file (`--config`). Keys are camelCase; every object is strict, so an unknown key is an error rather than ignored. Durations are strings with a unit: `500ms`, `3s`, `1.5s`, `2m`, `1h`, or a sequence such as `1m30s` (bare numbers are refused). `routeleader validate --config FILE` checks a file without starting anything; problems are reported with their key path and line.",
    "",
    "A default of — means the key is optional and has no fixed default (the description says what happens); `required` means the key must be given.",
    "",
    ...describeConfig().flatMap((s) => [`## ${s.title}`, "", ...(s.intro ? [s.intro, ""] : []), table(s.fields), ""]),
    selectorSection(),
    "",
    profileSection(),
    "",
    "## Rules between keys",
    "",
    "Besides each key's own type and range, the loader rejects a file that breaks any of these:",
    "",
    ...CROSS_FIELD_RULES.map((r) => `- ${r}`),
    "",
  ];
  return parts.join("\n");
}
