import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** One IAM policy statement after CloudFormation intrinsics are resolved. */
export interface Statement {
  Sid?: string;
  Effect: "Allow" | "Deny";
  Action: string | string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
  NotAction?: unknown;
  NotResource?: unknown;
}

export interface PolicyDocument {
  Version: string;
  Statement: Statement[];
}

/** An API request as IAM sees it: action, resource ARN, request context keys. */
export interface Request {
  action: string;
  resource: string;
  context?: Record<string, string>;
}

const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** IAM's wildcard match: * any run of characters, ? one character. */
export function globMatch(pattern: string, value: string, caseInsensitive = false): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, caseInsensitive ? "i" : "");
  return re.test(value);
}

function conditionHolds(condition: Statement["Condition"], context: Record<string, string>): boolean {
  for (const [operator, entries] of Object.entries(condition ?? {})) {
    for (const [key, expected] of Object.entries(entries)) {
      const actual = context[key];
      if (actual === undefined) return false; // a missing key never satisfies StringEquals/StringLike
      const values = list(expected);
      switch (operator) {
        case "StringEquals":
          if (!values.includes(actual)) return false;
          break;
        case "StringLike":
          if (!values.some((v) => globMatch(v, actual))) return false;
          break;
        case "ArnEquals":
        case "ArnLike":
          if (!values.some((v) => globMatch(v, actual))) return false;
          break;
        default:
          throw new Error(`condition operator ${operator} not modelled by this evaluator`);
      }
    }
  }
  return true;
}

/** True when some Allow statement covers the request and no Deny does (identity policy only). */
export function allows(policy: PolicyDocument, req: Request): boolean {
  const matches = (s: Statement) =>
    list(s.Action).some((a) => globMatch(a, req.action, true)) && list(s.Resource).some((r) => globMatch(r, req.resource)) && conditionHolds(s.Condition, req.context ?? {});
  if (policy.Statement.some((s) => s.Effect === "Deny" && matches(s))) return false;
  return policy.Statement.some((s) => s.Effect === "Allow" && matches(s));
}

/** IAM service prefix of each SDK v3 client package the agent may use. */
export const SERVICE_PREFIX: Record<string, string> = {
  "@aws-sdk/client-ec2": "ec2",
  "@aws-sdk/client-auto-scaling": "autoscaling",
  "@aws-sdk/client-ssm": "ssm",
  "@aws-sdk/client-secrets-manager": "secretsmanager",
  "@aws-sdk/client-sts": "sts",
  "@aws-sdk/client-eventbridge": "events",
};

export interface ApiCall {
  action: string;
  file: string;
}

/**
 * The AWS API calls a TypeScript source tree makes: every `new <Name>Command(` whose Name is
 * imported from an `@aws-sdk/client-*` package, as `<prefix>:<Name>`. A command imported from a
 * client without a known IAM prefix is reported as `?<package>:<Name>` so a test can fail on it.
 */
export function scanSdkCalls(source: string, file = "<source>"): ApiCall[] {
  const imported = new Map<string, { pkg: string; name: string }>();
  for (const m of source.matchAll(/import\s+(?:type\s+)?\{([^}]*)\}\s*from\s*["'](@aws-sdk\/client-[a-z0-9-]+)["']/g)) {
    for (const spec of m[1]!.split(",")) {
      const parts = spec.trim().replace(/^type\s+/, "").split(/\s+as\s+/);
      const name = parts[0]?.trim();
      if (!name) continue;
      imported.set((parts[1] ?? name).trim(), { pkg: m[2]!, name });
    }
  }
  const calls: ApiCall[] = [];
  for (const m of source.matchAll(/new\s+([A-Za-z0-9_]+)\s*\(/g)) {
    const local = m[1]!;
    const imp = imported.get(local);
    if (!imp || !imp.name.endsWith("Command")) continue;
    const prefix = SERVICE_PREFIX[imp.pkg];
    const api = imp.name.slice(0, -"Command".length);
    calls.push({ action: prefix ? `${prefix}:${api}` : `?${imp.pkg}:${api}`, file });
  }
  return calls;
}

/** scanSdkCalls over every .ts file under `dir` (tests excluded). */
export function scanSdkCallsInTree(dir: string, root = dir): ApiCall[] {
  const out: ApiCall[] = [];
  for (const name of readdirSync(dir).sort()) {
    const abs = join(dir, name);
    if (statSync(abs).isDirectory()) out.push(...scanSdkCallsInTree(abs, root));
    else if (name.endsWith(".ts") && !name.endsWith(".test.ts")) out.push(...scanSdkCalls(readFileSync(abs, "utf8"), relative(root, abs)));
  }
  return out;
}
