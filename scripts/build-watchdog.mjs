#!/usr/bin/env node
// npm run build:watchdog [-- --out DIR]   (npm run release runs it too)
//
// Bundles the watchdog Lambda (agent/watchdog/handler.ts) with esbuild into one CommonJS file,
// AWS SDK included (the function does not depend on the SDK version of the Lambda runtime),
// and zips it for the stack's WatchdogCodeBucket/WatchdogCodeKey parameters:
//   release/routeleader-watchdog-<version>.zip          index.js (handler index.handler) + THIRD_PARTY.txt
//   release/routeleader-watchdog-<version>.zip.sha256   sha256sum format
//
// Reproducible: one fixed timestamp in the zip (the last commit's time), entries in a fixed
// order, deflate level 9, so two builds of one commit give the same sha256.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32, deflateRawSync } from "node:zlib";
import { build } from "esbuild";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const i = process.argv.indexOf("--out");
const out = resolve(repo, i > 0 && process.argv[i + 1] ? process.argv[i + 1] : "release");
const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8"));
const name = `routeleader-watchdog-${pkg.version}`;
const step = (msg) => console.log(`[build:watchdog] ${msg}`);

step("bundle agent/watchdog/handler.ts (esbuild, node22, cjs)");
const result = await build({
  entryPoints: [join(repo, "agent", "watchdog", "handler.ts")],
  bundle: true,
  platform: "node",
  target: "node22",
  format: "cjs",
  minify: false,
  sourcemap: false,
  legalComments: "eof",
  metafile: true,
  write: false,
  logLevel: "warning",
});
const code = result.outputFiles[0].contents;

// Every bundled package with its licence, from the bundle's own inputs.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (!m) continue;
  const dir = join(repo, input.slice(0, input.lastIndexOf(`node_modules/${m[1]}/`)), "node_modules", m[1]);
  const manifest = join(dir, "package.json");
  if (!existsSync(manifest) || packages.has(dir)) continue;
  const p = JSON.parse(readFileSync(manifest, "utf8"));
  const license = typeof p.license === "string" ? p.license : (p.license?.type ?? "UNKNOWN");
  packages.set(dir, `${p.name}@${p.version} ${license}`);
}
const unknown = [...packages.values()].filter((l) => l.endsWith(" UNKNOWN"));
if (unknown.length) {
  console.error(`build:watchdog: no licence declared by ${unknown.join(", ")}`);
  process.exit(1);
}
const thirdParty = `routeleader watchdog ${pkg.version} (${pkg.license}) bundles these packages:\n${[...new Set(packages.values())].sort().join("\n")}\n`;

let epoch = Number(process.env.SOURCE_DATE_EPOCH ?? NaN);
if (!Number.isFinite(epoch)) {
  try {
    epoch = Number(execFileSync("git", ["log", "-1", "--format=%ct"], { cwd: repo, encoding: "utf8" }).trim());
  } catch {
    epoch = 315532800; // 1980-01-01, the earliest time a zip can hold
  }
}

/** A zip of the given files (deflated), every entry with the same DOS time. */
function zip(files, seconds) {
  const d = new Date(Math.max(seconds, 315532800) * 1000);
  const time = (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1);
  const date = ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate();
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [fileName, data] of files) {
    const nameBytes = Buffer.from(fileName, "utf8");
    const packed = deflateRawSync(data, { level: 9 });
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(8, 8); // deflate
    local.writeUInt16LE(time, 10);
    local.writeUInt16LE(date, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by: Unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(8, 10);
    central.writeUInt16LE(time, 12);
    central.writeUInt16LE(date, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(packed.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(((0o100644 << 16) >>> 0), 38); // -rw-r--r--
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, packed);
    centrals.push(central, nameBytes);
    offset += local.length + nameBytes.length + packed.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

mkdirSync(out, { recursive: true });
const zipFile = join(out, `${name}.zip`);
rmSync(zipFile, { force: true });
const bytes = zip(
  [
    ["index.js", Buffer.from(code)],
    ["THIRD_PARTY.txt", Buffer.from(thirdParty, "utf8")],
  ],
  epoch,
);
writeFileSync(zipFile, bytes);
const digest = createHash("sha256").update(bytes).digest("hex");
writeFileSync(`${zipFile}.sha256`, `${digest}  ${name}.zip\n`);
step(`${relative(repo, zipFile)} (${(bytes.length / 1024).toFixed(0)} KiB, ${packages.size} bundled packages; handler index.handler)`);
step(`sha256 ${digest}`);
