import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { ConfigError, parseConfig, type ConfigProblem } from "../../agent/config/index.js";

/**
 * Property-based tests of the config loader: whatever the text, parseConfig returns a Config
 * or throws a ConfigError (never anything else), and every problem has a path and a message
 * that names the offending key or value in words (never zod's bare "Invalid input").
 */

const VALID = {
  cluster: "prod",
  region: "eu-west-1",
  consul: { address: "http://127.0.0.1:8500", tokenFile: "/etc/routeleader/token", serviceName: "routeleader" },
  imds: { timeout: "1s" },
  aws: { writeTimeout: "2s", writeAttempts: 2 },
  election: { profile: "default", lockDelay: "3s", sessionTtl: "10s", livenessTtl: "3s", nodeChecks: ["serfHealth"], fenceMargin: "500ms" },
  discovery: { enabled: true, tags: { role: "nat" }, interval: "30s" },
  checks: {
    egress: { type: "ping", host: "8.8.8.8", every: "1s", timeout: "900ms", rise: 2, fall: 3 },
    web: { type: "http", url: "http://127.0.0.1/health", statusMin: 200, statusMax: 399, headers: { accept: "text/plain" } },
    dns: { type: "tcp", host: "127.0.0.1", port: 53 },
    script: { type: "command", command: ["/usr/local/bin/check", "--quick"] },
    nat: { type: "nat", ipv6: false },
  },
  routes: [
    { name: "default-v4", table: { and: [{ tags: { Name: "private-a" } }, { not: { main: true } }] }, destination: "0.0.0.0/0", checks: ["egress", "nat"] },
    { name: "default-v6", table: { or: [{ id: "rtb-0abc" }, { subnet: "subnet-0def" }] }, destination: "::/0", target: "eni", onRelease: "delete", preferredAz: "none" },
  ],
  reconcileInterval: "30s",
  sourceDestCheck: "fix",
  policy: { standbyDelay: "10s", failbackAfter: "30s", holdDown: "60s" },
  lifecycle: { watch: true, pollInterval: "5s", hookName: "drain" },
  hooks: { onAcquire: ["/usr/local/bin/on-acquire"], timeout: "10s" },
  http: { listen: "127.0.0.1:9731" },
  logLevel: "info",
};

type Path = (string | number)[];

function paths(value: unknown, prefix: Path = []): Path[] {
  const out: Path[] = prefix.length ? [prefix] : [];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...prefix, i])));
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...prefix, k]));
  return out;
}

const ALL_PATHS = paths(VALID);

type Mutation = { kind: "set"; path: Path; value: unknown } | { kind: "delete"; path: Path } | { kind: "addKey"; path: Path; key: string; value: unknown };

function apply(mutation: Mutation): unknown {
  const doc = structuredClone(VALID) as unknown as Record<string | number, unknown>;
  const target = mutation.kind === "addKey" ? mutation.path : mutation.path.slice(0, -1);
  let parent: Record<string | number, unknown> = doc;
  for (const seg of target) parent = parent[seg] as Record<string | number, unknown>;
  if (mutation.kind === "addKey") {
    if (parent && typeof parent === "object" && !Array.isArray(parent)) parent[mutation.key] = mutation.value;
    return doc;
  }
  const last = mutation.path[mutation.path.length - 1] as string | number;
  if (mutation.kind === "delete") {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else parent[last] = mutation.value;
  return doc;
}

/** Values worth trying anywhere: wrong types, empty things, near-misses of real values. */
const anyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.string({ maxLength: 20 }),
  fc.constantFrom("", " ", "0", "-1", "3", "3s", "3 s", "1h", "100d", "0.0.0.0/33", "::/129", "rtb-", "rtb-xyz", "subnet-0", "fast", "FAST", "yes", "~", "null", "true", "[]", "{}", "a/b", "../x", "http://", "ftp://x", "127.0.0.1:99999"),
  fc.integer({ min: -1_000_000, max: 1_000_000 }),
  fc.double({ noNaN: false }),
  fc.constant(null),
  fc.boolean(),
);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), path: fc.constantFrom(...ALL_PATHS), value: anyValue }),
  fc.record({ kind: fc.constant("delete" as const), path: fc.constantFrom(...ALL_PATHS) }),
  fc.record({ kind: fc.constant("addKey" as const), path: fc.constantFrom([], ...ALL_PATHS), key: fc.string({ minLength: 1, maxLength: 12 }), value: anyValue }),
);

/** Text built from config-like fragments: known and unknown keys, odd indentation, flow and block syntax. */
const yamlish = fc
  .array(
    fc.tuple(
      fc.constantFrom("", "  ", "    ", "  - ", "- ", "\t"),
      fc.constantFrom(...new Set(ALL_PATHS.map((p) => String(p[p.length - 1])).filter((k) => !/^\d+$/.test(k))), "bogus", "", "? ", "<<"),
      fc.constantFrom(": ", ":", " : ", ": |\n  ", ": >\n", ": [", ": {", ": &a ", ": *a ", ": !!int "),
      fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom("0.0.0.0/0", "3s", "[1, 2]", "{a: 1}", "rtb-0abc", "'quoted'", '"dq', "null", "~", "-", "---", "...")),
    ),
    { maxLength: 12 },
  )
  .map((lines) => lines.map(([indent, key, sep, value]) => `${indent}${key}${sep}${value}`).join("\n"));

/** Parses; returns the problems, or [] when the document is valid. Anything but ConfigError fails the property. */
function problemsOf(text: string): readonly ConfigProblem[] {
  try {
    parseConfig(text, "prop.yaml");
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw new Error(`parseConfig threw ${(err as Error)?.name}: ${(err as Error)?.message}\n--- input ---\n${text}`, { cause: err });
  }
}

const GENERIC = /^(Invalid input|Invalid key in record|Invalid URL|Invalid option|Invalid discriminator|Too (small|big))/;

function assertHelpful(problems: readonly ConfigProblem[], text: string): void {
  for (const p of problems) {
    const where = `problem ${JSON.stringify(p)} for input:\n${text}`;
    expect(p.path, where).not.toBe("");
    expect(p.message.trim(), where).not.toBe("");
    expect(p.message, where).not.toMatch(GENERIC);
  }
}

const text = (doc: unknown) => stringify(doc);

function pathText(path: Path): string {
  return path.reduce<string>((acc, seg) => (typeof seg === "number" ? `${acc}[${seg}]` : acc ? `${acc}.${seg}` : seg), "");
}

describe("config loader, property-based", () => {
  it("any text: a Config or a ConfigError, never a crash", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), (t) => {
        assertHelpful(problemsOf(t), t);
      }),
      { numRuns: 500 },
    );
  });

  it("YAML-ish documents from config fragments: only ConfigErrors, each with a path and a message in words", () => {
    fc.assert(
      fc.property(yamlish, (t) => {
        assertHelpful(problemsOf(t), t);
      }),
      { numRuns: 1500 },
    );
  });

  it("any JSON value as the document: only ConfigErrors, each with a path and a message in words", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        const t = text(v);
        assertHelpful(problemsOf(t), t);
      }),
      { numRuns: 500 },
    );
  });

  it("one mutation of a valid config: problems name the mutated key's path, and a wrong value is quoted back", () => {
    expect(problemsOf(text(VALID))).toEqual([]);
    fc.assert(
      fc.property(mutation, (m) => {
        const t = text(apply(m));
        const problems = problemsOf(t);
        assertHelpful(problems, t);
        for (const p of problems) {
          const where = `mutation ${JSON.stringify(m)} → ${JSON.stringify(p)}`;
          if (m.kind === "addKey") {
            // An added key is named as unknown (or, in a record, judged as a name or an entry).
            if (p.message.startsWith("unknown key")) expect(p.message, where).toContain(m.key.slice(0, 5));
            continue;
          }
          if (m.kind === "set" && p.path === pathText(m.path) && !p.message.startsWith("required field is missing") && (typeof m.value !== "object" || m.value === null)) {
            // The offending scalar is quoted back (strings may be shown truncated or escaped):
            // no message about the mutated key may leave out the value it is about.
            const raw = typeof m.value === "string" ? m.value.slice(0, 10) : String(m.value);
            const shown = p.message.includes(raw) || p.message.includes(JSON.stringify(m.value)?.slice(1, 10) ?? "");
            expect(shown, where).toBe(true);
          }
        }
      }),
      // 1,000 single mutations cover every path of VALID several times over; 3,000 took 80-90 s alone and
      // passed vitest's limit under load.
      { numRuns: 1000 },
    );
  }, 300_000);
});

describe("config loader messages name the value and what is allowed", () => {
  const first = (yaml: string) => problemsOf(yaml)[0];
  const base = "cluster: prod\nroutes:\n  - name: a\n    table: { main: true }\n    destination: 0.0.0.0/0\n";

  it.each([
    ["a value of the wrong type", base.replace("cluster: prod", "cluster: [a, b]"), { path: "cluster", message: "expected a string, got a list of 2" }],
    ["a list where a mapping belongs", `${base}election: [fast]\n`, { path: "election", message: "expected a mapping, got a list of 1" }],
    ["an enum value", `${base}sourceDestCheck: maybe\n`, { path: "sourceDestCheck", message: 'expected "fix" or "verify" or "ignore", got "maybe"' }],
    ["a number out of range", `${base}aws: { writeAttempts: 7 }\n`, { path: "aws.writeAttempts", message: "expected number to be <=3, got 7" }],
    ["a check type", `${base}checks: { x: { type: icmp } }\n`, { path: "checks.x.type", message: 'unknown type "icmp" (one of "ping", "tcp", "http", "command", "nat")' }],
    ["a check name", `${base}checks: { Egress: { type: nat } }\n`, { path: "checks.Egress", message: expect.stringMatching(/^invalid name "Egress": check name must be 1-63 characters/) }],
    ["a URL", `${base}checks: { web: { type: http, url: "localhost/health" } }\n`, { path: "checks.web.url", message: 'expected an http:// or https:// URL, got "localhost/health"' }],
    ["a table selector", base.replace("{ main: true }", "private-a"), { path: "routes[0].table", message: expect.stringMatching(/^a table selector is one of \{id: rtb-\.\.\.\}.*, got "private-a"$/) }],
    ["an alias without its anchor", "cluster: *nat\n", { path: "(yaml)", message: expect.stringMatching(/^malformed YAML: Unresolved alias/) }],
    ["an unknown top-level key", `${base}colour: red\n`, { path: "(top level)", message: 'unknown key "colour"' }],
  ])("%s", (_what, yaml, expected) => {
    expect(first(yaml)).toMatchObject(expected);
  });
});
