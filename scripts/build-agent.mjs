#!/usr/bin/env node
// npm run build [-- --out DIR]   (npm run release runs it into the artifact)
//
// Bundles the agent (agent/cli.ts) with esbuild into DIR/agent/cli.js (default dist/) plus the
// chunks its verbs load on demand (DIR/agent/chunks/). The AWS SDK packages are taken from
// their ES module builds so that only the commands the agent sends are kept: a package root
// loaded as such (dist-cjs) defines every EC2 command and takes a bare node from 40 to 133 MiB
// (issue #16). pino and pino-pretty stay external: pino starts its pretty transport in a worker
// thread that resolves files by path, so they load from node_modules as published.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * V8 flags the agent is started with (the release's bin/routeleader, the systemd unit of
 * scripts/bootstrap.sh): no optimizing compiler and one GC thread cut a 20-route agent's RSS
 * from about 100 to 83 MiB at the same CPU (issue #16; docs/benchmarks/footprint.json).
 */
export const NODE_FLAGS = ["--lite-mode", "--single-threaded-gc"];

/**
 * Environment the agent is started with. glibc keeps what V8 frees after parsing and compiling
 * (zone segments of 8–64 KiB from malloc) in its heap instead of returning it; with mmap used
 * from 32 KiB such blocks go back to the kernel when freed: a 20-route agent's RSS 83.6 → 69.2
 * MiB (`npm run bench:footprint -- --minutes 2`, issue #16). Ignored where libc is not glibc.
 */
export const AGENT_ENV = { GLIBC_TUNABLES: "glibc.malloc.mmap_threshold=32768" };

/** Packages loaded from node_modules at run time rather than bundled. */
export const EXTERNAL_PACKAGES = ["pino", "pino-pretty"];

/** Bundles the agent into `out`/agent; returns the esbuild metafile. */
export async function buildAgent(out) {
  const agentDir = join(out, "agent");
  rmSync(agentDir, { recursive: true, force: true });
  mkdirSync(agentDir, { recursive: true });
  const result = await build({
    absWorkingDir: repo,
    entryPoints: { cli: join(repo, "agent", "cli.ts") },
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    mainFields: ["module", "main"],
    outdir: agentDir,
    chunkNames: "chunks/[name]-[hash]",
    external: EXTERNAL_PACKAGES,
    // Bundled CommonJS packages (commander, consul, prom-client) call require() for Node built-ins.
    banner: { js: "import { createRequire as __routeleaderRequire } from 'node:module'; const require = __routeleaderRequire(import.meta.url);" },
    legalComments: "eof",
    sourcemap: false,
    minify: false,
    metafile: true,
    logLevel: "error",
  });
  writeFileSync(join(agentDir, "bundle-inputs.json"), `${JSON.stringify(bundledPackages(result.metafile), null, 2)}\n`);
  return result.metafile;
}

/** name → bytes in the output, per package bundled (the agent's own sources as "routeleader"). */
export function bundledPackages(metafile) {
  const sizes = {};
  for (const output of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
      const name = m ? m[1] : "routeleader";
      sizes[name] = (sizes[name] ?? 0) + bytesInOutput;
    }
  }
  return Object.fromEntries(Object.entries(sizes).sort((a, b) => b[1] - a[1]));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf("--out");
  const out = resolve(repo, i > 0 && process.argv[i + 1] ? process.argv[i + 1] : "dist");
  const metafile = await buildAgent(out);
  const bytes = Object.values(metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  console.log(`[build] ${relative(repo, join(out, "agent", "cli.js"))} and ${Object.keys(metafile.outputs).length - 1} chunks, ${(bytes / 1024 / 1024).toFixed(1)} MiB`);
}
