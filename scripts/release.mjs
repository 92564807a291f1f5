#!/usr/bin/env node
// npm run release [-- --arch arm64|x64] [--out DIR]
//
// Builds the artifact the NAT instances install, from this checkout:
//   release/routeleader-<version>-linux-<arch>.tar.gz         the agent, ready for plain `node`
//   release/routeleader-<version>-linux-<arch>.tar.gz.sha256  sha256sum format; the stack's ArtifactSha256
//   release/routeleader-<version>-linux-<arch>.sbom.json      every bundled package: name, version, licence
//
// The tarball holds one folder, routeleader/: dist/ (the esbuild bundle of scripts/build-agent.mjs), package.json
// and package-lock.json, node_modules/ with the production dependencies only (npm ci
// --omit=dev --ignore-scripts, from the lock file), bin/routeleader (a wrapper calling node),
// bootstrap.sh (the instance bootstrap, run by the user data after it verified this tarball) and
// the scripts it runs (conntrackd-sync.sh; node-credentials.sh on the Consul servers),
// SBOM.json and README.md. No tsx, no TypeScript, no test code. The production dependencies
// are plain JavaScript (the build fails on a native addon), so one tarball serves both arm64
// and x64; the name still says which instances it was built and tested for.
//
// Reproducible: entries sorted, owner root, mtime = the last commit's time, gzip without a
// name or timestamp, so two builds of one commit give the same sha256.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AGENT_ENV, buildAgent, NODE_FLAGS } from "./build-agent.mjs";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const ARCHES = { x64: "x64", x86_64: "x64", amd64: "x64", arm64: "arm64", aarch64: "arm64" };
const arch = ARCHES[arg("--arch", process.arch)];
if (!arch) {
  console.error(`release: --arch must be arm64 or x64, not ${arg("--arch", process.arch)}`);
  process.exit(2);
}
const out = resolve(repo, arg("--out", "release"));
const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8"));
const name = `routeleader-${pkg.version}-linux-${arch}`;
const stageRoot = join(out, `.stage-${name}`);
mkdirSync(out, { recursive: true });
const stage = join(stageRoot, "routeleader");

const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { cwd: repo, stdio: ["ignore", "inherit", "inherit"], ...opts });
const step = (msg) => console.log(`[release] ${msg}`);

rmSync(stageRoot, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });

step(`bundle the agent (scripts/build-agent.mjs, esbuild) into ${relative(repo, stage)}/dist`);
// One ES module bundle plus the chunks its verbs load on demand: only the AWS SDK commands the
// agent sends are kept, and `validate` never loads the SDK (issue #16: footprint). The watchdog
// Lambda is shipped as its own bundle (below) and has no place in the agent's.
await buildAgent(join(stage, "dist"));

step("package.json, lock file, bootstrap, README");
// The manifest as published, minus what only development needs.
const manifest = {
  name: pkg.name,
  version: pkg.version,
  description: pkg.description,
  license: pkg.license,
  type: pkg.type,
  engines: pkg.engines,
  bin: { routeleader: "bin/routeleader" },
  dependencies: pkg.dependencies,
};
writeFileSync(join(stage, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
copyFileSync(join(repo, "package-lock.json"), join(stage, "package-lock.json"));
copyFileSync(join(repo, "README.md"), join(stage, "README.md"));
copyFileSync(join(repo, "scripts", "bootstrap.sh"), join(stage, "bootstrap.sh"));
chmodSync(join(stage, "bootstrap.sh"), 0o755);
// The Consul servers' step that gives each NAT node its own token and certificate, and the policy it grants.
copyFileSync(join(repo, "scripts", "node-credentials.sh"), join(stage, "node-credentials.sh"));
chmodSync(join(stage, "node-credentials.sh"), 0o755);
// The same-AZ pair's conntrackd configuration and peer discovery (bootstrap.sh runs it).
copyFileSync(join(repo, "scripts", "conntrackd-sync.sh"), join(stage, "conntrackd-sync.sh"));
chmodSync(join(stage, "conntrackd-sync.sh"), 0o755);
copyFileSync(join(repo, "docs", "consul-acl-policy.hcl"), join(stage, "consul-acl-policy.hcl"));
mkdirSync(join(stage, "bin"));
writeFileSync(
  join(stage, "bin", "routeleader"),
  `#!/bin/sh
# routeleader with whichever Node.js is first on PATH (>= ${pkg.engines.node.replace(">=", "")}); the systemd unit names node-22 itself.
# glibc returns freed blocks of 32 KiB and more to the kernel (AGENT_ENV of scripts/build-agent.mjs).
GLIBC_TUNABLES="\${GLIBC_TUNABLES:+\$GLIBC_TUNABLES:}${AGENT_ENV.GLIBC_TUNABLES}" exec node ${NODE_FLAGS.join(" ")} "$(dirname "$(readlink -f "$0")")/../dist/agent/cli.js" "$@"
`,
);
chmodSync(join(stage, "bin", "routeleader"), 0o755);

step("production dependencies (npm ci --omit=dev --ignore-scripts)");
// --ignore-scripts: nothing from a dependency runs at build time; the lock file pins every
// version and integrity hash. The npm cache of `npm ci` in the checkout serves it offline.
sh("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], { cwd: stage });
rmSync(join(stage, "node_modules", ".package-lock.json"), { force: true });

step("inventory (SBOM)");
/** Every package under node_modules (nested ones too): name, version, licence, path. */
function inventory(dir) {
  const found = [];
  const visit = (nm) => {
    if (!existsSync(nm)) return;
    for (const entry of readdirSync(nm).sort()) {
      if (entry.startsWith(".")) continue;
      const dirs = entry.startsWith("@") ? readdirSync(join(nm, entry)).sort().map((s) => join(entry, s)) : [entry];
      for (const d of dirs) {
        const abs = join(nm, d);
        const manifestFile = join(abs, "package.json");
        if (!existsSync(manifestFile)) continue;
        const m = JSON.parse(readFileSync(manifestFile, "utf8"));
        let license = m.license ?? (Array.isArray(m.licenses) ? m.licenses.map((l) => l.type ?? l).join(" OR ") : undefined);
        if (license && typeof license === "object") license = license.type;
        found.push({ name: m.name, version: m.version, license: license ?? "UNKNOWN", path: relative(stage, abs) });
        visit(join(abs, "node_modules"));
      }
    }
  };
  visit(join(dir, "node_modules"));
  return found;
}
const packages = inventory(stage);
const unknown = packages.filter((p) => p.license === "UNKNOWN");
if (unknown.length) {
  console.error(`release: no licence declared by ${unknown.map((p) => `${p.name}@${p.version}`).join(", ")}`);
  process.exit(1);
}
const native = [];
const findNative = (d) => {
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, e.name);
    if (e.isDirectory()) findNative(p);
    else if (e.name.endsWith(".node") || e.name === "binding.gyp") native.push(relative(stage, p));
  }
};
findNative(join(stage, "node_modules"));
if (native.length) {
  console.error(`release: native code in a production dependency (the tarball would be tied to one architecture): ${native.join(", ")}`);
  process.exit(1);
}
for (const forbidden of ["tsx", "typescript", "vitest", "esbuild"]) {
  if (packages.some((p) => p.name === forbidden)) {
    console.error(`release: development package ${forbidden} ended up in the artifact`);
    process.exit(1);
  }
}
const sbom = {
  name: pkg.name,
  version: pkg.version,
  license: pkg.license,
  platform: `linux-${arch}`,
  node: pkg.engines.node,
  packages: packages.map(({ name: n, version, license, path }) => ({ name: n, version, license, path })),
};
const sbomText = `${JSON.stringify(sbom, null, 2)}\n`;
writeFileSync(join(stage, "SBOM.json"), sbomText);

step("tarball");
let epoch = process.env.SOURCE_DATE_EPOCH;
if (!epoch) {
  try {
    epoch = execFileSync("git", ["log", "-1", "--format=%ct"], { cwd: repo, encoding: "utf8" }).trim();
  } catch {
    epoch = "0";
  }
}
const tarball = join(out, `${name}.tar.gz`);
rmSync(tarball, { force: true });
sh("tar", ["--sort=name", `--mtime=@${epoch}`, "--owner=0", "--group=0", "--numeric-owner", "--mode=u+rwX,go+rX,go-w", "-C", stageRoot, "-cf", `${tarball}.tmp`, "routeleader"]);
sh("gzip", ["-n", "-9", "-f", `${tarball}.tmp`]);
sh("mv", [`${tarball}.tmp.gz`, tarball]);
const digest = createHash("sha256").update(readFileSync(tarball)).digest("hex");
writeFileSync(`${tarball}.sha256`, `${digest}  ${name}.tar.gz\n`);
writeFileSync(join(out, `${name}.sbom.json`), sbomText);
rmSync(stageRoot, { recursive: true, force: true });

const mib = (statSync(tarball).size / 1024 / 1024).toFixed(1);
step(`${relative(repo, tarball)} (${mib} MiB, ${packages.length} bundled packages)`);
step(`sha256 ${digest}`);

// The watchdog Lambda the stack deploys (WatchdogCodeBucket/WatchdogCodeKey), next to the tarball.
step("watchdog Lambda zip (scripts/build-watchdog.mjs)");
sh(process.execPath, [join(repo, "scripts", "build-watchdog.mjs"), "--out", out]);
