#!/usr/bin/env node
// Copies scripts/user-data.sh verbatim into every "# @embed scripts/user-data.sh" block of the
// CloudFormation templates (a YAML literal block ending with the line "# @end scripts/user-data.sh"),
// so the launch templates' user data is the tested script, byte for byte. (scripts/bootstrap.sh
// travels inside the release artifact, which the user data verifies before running it.)
//
//   node scripts/embed-user-data.mjs          rewrite the templates
//   node scripts/embed-user-data.mjs --check  exit 1 if a template is out of date
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const START = "# @embed scripts/user-data.sh";
const END = "# @end scripts/user-data.sh";

/** The template text with every embed block holding `script`. */
export function embed(template, script) {
  const lines = template.split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    out.push(line);
    if (!line.includes(START)) continue;
    const indent = " ".repeat(line.indexOf("-") + 2);
    let j = i + 1;
    while (j < lines.length && lines[j].trim() !== END) j++;
    if (j === lines.length) throw new Error(`line ${i + 1}: "${START}" without "${END}"`);
    const body = script.endsWith("\n") ? script.slice(0, -1) : script;
    for (const s of body.split("\n")) out.push(s === "" ? "" : indent + s);
    out.push(indent + END);
    i = j;
  }
  return out.join("\n");
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const check = process.argv.includes("--check");
  const script = readFileSync(join(repo, "scripts", "user-data.sh"), "utf8");
  let stale = 0;
  const dir = join(repo, "cloudformation");
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".yaml"))) {
    const file = join(dir, name);
    const before = readFileSync(file, "utf8");
    const after = embed(before, script);
    if (after === before) continue;
    if (check) {
      console.error(`${file}: user data differs from scripts/user-data.sh (run node scripts/embed-user-data.mjs)`);
      stale++;
    } else {
      writeFileSync(file, after);
      console.log(`${file}: user data updated`);
    }
  }
  process.exitCode = stale ? 1 : 0;
}
