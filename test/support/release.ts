import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO } from "./cfn.js";

const run = promisify(execFile);

/** What `npm run release` produced. */
export interface ReleaseArtifact {
  dir: string;
  /** routeleader-<version>-linux-<arch>.tar.gz, absolute. */
  tarball: string;
  fileName: string;
  sha256File: string;
  sbomFile: string;
  sha256: string;
  version: string;
  arch: string;
}

/** sha256 (hex) of a file, or of bytes. */
export function sha256Of(file: string | Buffer): string {
  return createHash("sha256").update(typeof file === "string" ? readFileSync(file) : file).digest("hex");
}

/**
 * Runs `npm run release -- --out DIR [--arch ARCH]` from this checkout into a fresh temporary
 * folder (never the developer's release/), about a minute on 2 cores.
 */
export async function buildRelease(options: { arch?: string } = {}): Promise<ReleaseArtifact> {
  const dir = mkdtempSync(join(tmpdir(), "rl-release-"));
  const args = ["run", "--silent", "release", "--", "--out", dir, ...(options.arch ? ["--arch", options.arch] : [])];
  await run("npm", args, { cwd: REPO, maxBuffer: 16 * 1024 * 1024 });
  const fileName = readdirSync(dir).find((f) => f.endsWith(".tar.gz"));
  if (!fileName) throw new Error(`npm run release wrote no tarball into ${dir}: ${readdirSync(dir).join(", ")}`);
  const m = /^routeleader-(.+)-linux-(arm64|x64)\.tar\.gz$/.exec(fileName);
  if (!m) throw new Error(`unexpected artifact name ${fileName}`);
  const tarball = join(dir, fileName);
  return {
    dir,
    tarball,
    fileName,
    sha256File: `${tarball}.sha256`,
    sbomFile: join(dir, fileName.replace(/\.tar\.gz$/, ".sbom.json")),
    sha256: sha256Of(tarball),
    version: m[1]!,
    arch: m[2]!,
  };
}
