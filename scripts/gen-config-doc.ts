import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { renderConfigDoc } from "./config-doc.js";

/** Writes docs/configuration.md from the config schema (`npm run docs:config`). */
const target = fileURLToPath(new URL("../docs/configuration.md", import.meta.url));
writeFileSync(target, renderConfigDoc());
console.log(`wrote ${target}`);
