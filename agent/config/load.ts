import { readFileSync } from "node:fs";
import { LineCounter, parseDocument, isNode } from "yaml";
import type { z } from "zod";
import { checkRules } from "./rules.js";
import { configSchema, type RawConfig } from "./schema.js";

/** Profile defaults: what `election.profile` changes when a field is not set explicitly. */
export const PROFILE_DEFAULTS = {
  default: { lockDelayMs: 1200, writeTimeoutMs: 700, fenceMarginMs: 500, peerIntervalMs: 200, peerMisses: 4 },
  fast: { lockDelayMs: 650, writeTimeoutMs: 400, fenceMarginMs: 250, peerIntervalMs: 100, peerMisses: 3 },
} as const;

/** One problem in a config file, located by its config path and, when known, its line. */
export interface ConfigProblem {
  readonly path: string;
  readonly line?: number;
  readonly message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n` +
        problems.map((p) => `  ${file}${p.line ? `:${p.line}` : ""}: ${p.path || "(top level)"}: ${p.message}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/** The validated configuration, with profile-dependent values resolved. Frozen. */
export type Config = Readonly<
  Omit<RawConfig, "aws" | "election" | "peers"> & {
    aws: RawConfig["aws"] & { writeTimeout: number };
    election: RawConfig["election"] & { lockDelay: number; fenceMargin: number };
    peers: RawConfig["peers"] & { interval: number; misses: number };
    /** Where the config came from, for messages. */
    source: string;
  }
>;

/** `routes[0].destination` from zod's path array. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, seg) => {
    if (typeof seg === "number") return `${acc}[${seg}]`;
    return acc ? `${acc}.${String(seg)}` : String(seg);
  }, "");
}

/** A short rendering of an offending value for messages: `"abc"`, `42`, `a list`, `a mapping`. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

/** YAML words for zod's type names. */
const EXPECTED_NAMES: Record<string, string> = { object: "a mapping", record: "a mapping", array: "a list", int: "an integer", string: "a string", number: "a number", boolean: "true or false" };

const SELECTOR_FORMS = "{id: rtb-...}, {tags: {...}}, {subnet: subnet-...}, {main: true}, {and: [...]}, {or: [...]}, {not: {...}}";

/** zod's issue in words that name the offending value and what is allowed instead. */
function issueMessage(issue: z.core.$ZodIssue): string {
  const input = (issue as { input?: unknown }).input;
  const got = input === undefined ? "" : `, got ${describeValue(input)}`;
  switch (issue.code) {
    case "unrecognized_keys":
      return `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
    case "invalid_type":
      if (input === undefined) return `required field is missing (expected ${EXPECTED_NAMES[issue.expected] ?? issue.expected})`;
      return `expected ${EXPECTED_NAMES[issue.expected] ?? issue.expected}${got}`;
    case "invalid_union": {
      const discriminator = (issue as { discriminator?: string; options?: unknown[] }).discriminator;
      if (discriminator) {
        const options = ((issue as { options?: unknown[] }).options ?? []).map((o) => JSON.stringify(o)).join(", ");
        const value = input && typeof input === "object" ? (input as Record<string, unknown>)[discriminator] : undefined;
        return value === undefined ? `${discriminator} is missing (one of ${options})` : `unknown ${discriminator} ${describeValue(value)} (one of ${options})`;
      }
      if (issue.path.includes("table")) return input === undefined ? `required field is missing (a table selector: ${SELECTOR_FORMS})` : `a table selector is one of ${SELECTOR_FORMS}${got}`;
      return `does not match any allowed form (see docs/configuration.md)${got}`;
    }
    case "invalid_value":
      return `expected ${issue.values.map((v) => JSON.stringify(v)).join(" or ")}${got}`;
    case "invalid_key": {
      const inner = (issue as { issues?: { message: string }[] }).issues?.[0]?.message;
      return `invalid name ${describeValue(input)}${inner ? `: ${inner}` : ""}`;
    }
    case "invalid_format":
      if (issue.format === "url") return `expected an http:// or https:// URL${got}`;
      return input === undefined || (typeof input === "string" && input !== "" && issue.message.includes(input)) ? issue.message : `${issue.message}${got}`;
    case "too_small":
    case "too_big":
      return `${issue.message.replace(/^Too (small|big): /, "")}${got}`;
    default:
      return issue.message;
  }
}

/** Warnings found while validating a config (risky but legal values), by config object. */
const WARNINGS = new WeakMap<object, readonly ConfigProblem[]>();

/** Where each config path is in its file, by config object (problems found later, e.g. against AWS, name the line too). */
const LOCATORS = new WeakMap<object, (path: readonly PropertyKey[]) => number | undefined>();

/** A problem at a config path of a validated config, with its line when the file is known. */
export function configProblem(config: Config, path: readonly PropertyKey[], message: string): ConfigProblem {
  const line = LOCATORS.get(config)?.(path);
  return { path: formatPath(path) || "(top level)", message, ...(line ? { line } : {}) };
}

/** The warnings of a validated config: legal values with a known risk. Empty when none. */
export function configWarnings(config: Config): readonly ConfigProblem[] {
  return WARNINGS.get(config) ?? [];
}

/** Validates an already-parsed object (YAML or JSON). Throws ConfigError. */
export function validateConfig(input: unknown, source: string, locate: (path: readonly PropertyKey[]) => number | undefined = () => undefined): Config {
  const result = configSchema.safeParse(input, { reportInput: true });
  if (!result.success) {
    throw new ConfigError(
      source,
      result.error.issues.map((issue) => {
        // For an unknown key, point at the key's own line rather than its parent's.
        const line = locate(issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0] as string] : issue.path);
        return { path: formatPath(issue.path) || "(top level)", message: issueMessage(issue), ...(line ? { line } : {}) };
      }),
    );
  }
  const raw = result.data;
  const profile = PROFILE_DEFAULTS[raw.election.profile];
  const config: Config = {
    ...raw,
    aws: { ...raw.aws, writeTimeout: raw.aws.writeTimeout ?? profile.writeTimeoutMs },
    election: { ...raw.election, lockDelay: raw.election.lockDelay ?? profile.lockDelayMs, fenceMargin: raw.election.fenceMargin ?? profile.fenceMarginMs },
    peers: { ...raw.peers, interval: raw.peers.interval ?? profile.peerIntervalMs, misses: raw.peers.misses ?? profile.peerMisses },
    source,
  };
  const found = checkRules(config);
  const toProblem = (f: { path: readonly PropertyKey[]; message: string }): ConfigProblem => {
    const line = locate(f.path);
    return { path: formatPath(f.path) || "(top level)", message: f.message, ...(line ? { line } : {}) };
  };
  if (found.errors.length) throw new ConfigError(source, found.errors.map(toProblem));
  const frozen = deepFreeze(config);
  WARNINGS.set(frozen, found.warnings.map(toProblem));
  LOCATORS.set(frozen, locate);
  return frozen;
}

/** Parses YAML text and validates it; problems carry line numbers. Throws ConfigError. */
export function parseConfig(text: string, source: string): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({
        path: "(yaml)",
        line: e.linePos?.[0]?.line ?? lineCounter.linePos(e.pos[0]).line,
        message: `malformed YAML: ${e.message.split("\n")[0]}`,
      })),
    );
  }
  const locate = (path: readonly PropertyKey[]): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n) as unknown[], true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (err) {
    // An alias without its anchor, or an alias bomb past the parser's alias limit.
    throw new ConfigError(source, [{ path: "(yaml)", message: `malformed YAML: ${(err as Error).message}` }]);
  }
  return validateConfig(value ?? {}, source, locate);
}

/** Reads and validates a config file. Throws ConfigError (unreadable, YAML, schema, rules). */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new ConfigError(file, [{ path: "(file)", message: `cannot read config file (${code})` }]);
  }
  return parseConfig(text, file);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
