import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTemplate, REPO } from "../support/cfn.js";

/** The Consul the stacks and their docs tell operators to install. */

const TEMPLATES = ["routeleader-nat.yaml", "demo-vpc.yaml"];
const versionsIn = (text: string) => [...new Set([...text.matchAll(/consul[_/](\d+\.\d+\.\d+)/gi)].map((m) => m[1]))];

describe("ship: the Consul version the stacks name", () => {
  it("ship: every ConsulBinaryUrl description names v1.16.1 (the last MPL-2.0 release, the tested one) and no other version", () => {
    for (const name of TEMPLATES) {
      const description = String(loadTemplate(name).Parameters.ConsulBinaryUrl.Description);
      expect(versionsIn(description), `${name}: ${description}`).toEqual(["1.16.1"]);
    }
    expect(String(loadTemplate("routeleader-nat.yaml").Parameters.ConsulBinaryUrl.Description)).toMatch(/MPL-2\.0/);
  });

  it("ship: docs/deploy.md's parameter table and deploy commands name only v1.16.1 as the Consul to install", () => {
    const deploy = readFileSync(join(REPO, "docs", "deploy.md"), "utf8");
    const row = deploy.split("\n").find((l) => l.startsWith("| `ConsulBinaryUrl`"))!;
    expect(versionsIn(row)).toEqual(["1.16.1"]);
    expect(deploy).toMatch(/^V=1\.16\.1$/m);
  });
});
