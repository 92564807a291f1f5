import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { configSchema } from "../../agent/config/index.js";
import { renderConfigDoc } from "../../scripts/config-doc.js";

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
}

/** Leaf key paths, found through zod's JSON Schema output (a walk independent of the generator's). */
function leafPaths(schema: JsonSchema, prefix: string): string[] {
  if (schema.type === "object" && schema.properties) {
    return Object.entries(schema.properties).flatMap(([key, child]) => childPaths(child, `${prefix}${key}`));
  }
  return [prefix];
}

function childPaths(child: JsonSchema, path: string): string[] {
  if (child.type === "object" && child.properties) return leafPaths(child, `${path}.`);
  if (child.type === "array" && child.items?.type === "object" && child.items.properties) return leafPaths(child.items, `${path}[].`);
  const variants = typeof child.additionalProperties === "object" ? (child.additionalProperties.oneOf ?? child.additionalProperties.anyOf) : undefined;
  if (variants?.every((v) => v.type === "object" && v.properties)) {
    return [path, ...variants.flatMap((v) => leafPaths(v, `${path}.<name>.`))];
  }
  return [path];
}

describe("docs/configuration.md", () => {
  const committed = readFileSync(new URL("../../docs/configuration.md", import.meta.url), "utf8");

  it("is exactly what scripts/gen-config-doc.ts generates from the schema (run `npm run docs:config` after changing it)", () => {
    expect(committed).toBe(renderConfigDoc());
  });

  it("documents every leaf key of the schema in a table row", () => {
    const leaves = [...new Set(leafPaths(z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as JsonSchema, ""))];
    expect(leaves).toContain("election.lockDelay");
    expect(leaves).toContain("checks.<name>.port");
    expect(leaves).toContain("routes[].table");
    const missing = leaves.filter((path) => !committed.includes(`| \`${path}\` |`));
    expect(missing).toEqual([]);
  });

  it("shows defaults, duration ranges and every table-selector form", () => {
    expect(committed).toMatch(/\| `election\.sessionTtl` \| duration \(10s–1h\) \| `"10s"` \|/);
    expect(committed).toMatch(/\| `aws\.writeAttempts` \| integer \(1–3\) \| `2` \|/);
    expect(committed).toMatch(/\| `routes\[\]\.destination` \| CIDR \| required \|/);
    for (const form of ["id", "tags", "subnet", "main", "and", "or", "not"]) {
      expect(committed).toMatch(new RegExp(`^\\| \`${form}\` \\|`, "m"));
    }
  });
});
