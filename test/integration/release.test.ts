import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO } from "../support/cfn.js";
import { buildRelease, sha256Of, type ReleaseArtifact } from "../support/release.js";

const run = promisify(execFile);

/** Every package.json under node_modules (nested too), as name@version → licence. */
function bundledPackages(root: string): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>();
  const visit = (nm: string) => {
    if (!existsSync(nm)) return;
    for (const entry of readdirSync(nm)) {
      if (entry.startsWith(".")) continue;
      const dirs = entry.startsWith("@") ? readdirSync(join(nm, entry)).map((s) => join(entry, s)) : [entry];
      for (const d of dirs) {
        const file = join(nm, d, "package.json");
        if (!existsSync(file)) continue;
        const m = JSON.parse(readFileSync(file, "utf8")) as { name: string; version: string; license?: string };
        out.set(`${m.name}@${m.version}`, m.license);
        visit(join(nm, d, "node_modules"));
      }
    }
  };
  visit(join(root, "node_modules"));
  return out;
}

describe("ship: npm run release", () => {
  let artifact: ReleaseArtifact;
  let extracted: string;
  let app: string;

  beforeAll(async () => {
    artifact = await buildRelease();
    extracted = mkdtempSync(join(tmpdir(), "rl-extracted-"));
    await run("tar", ["-xzf", artifact.tarball, "-C", extracted]);
    app = join(extracted, "routeleader");
  });
  afterAll(() => {
    for (const d of [artifact?.dir, extracted]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it("ship: names the artifact routeleader-<version>-linux-<arch>.tar.gz after package.json and this machine", () => {
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string };
    expect(artifact.fileName).toBe(`routeleader-${pkg.version}-linux-${process.arch}.tar.gz`);
    const watchdogZip = `routeleader-watchdog-${pkg.version}.zip`;
    expect(readdirSync(artifact.dir).sort()).toEqual([artifact.fileName, `${artifact.fileName}.sha256`, artifact.fileName.replace(".tar.gz", ".sbom.json"), watchdogZip, `${watchdogZip}.sha256`].sort());
  });

  it("ship: the .sha256 file is sha256sum's format and matches the tarball", async () => {
    expect(readFileSync(artifact.sha256File, "utf8")).toBe(`${sha256Of(artifact.tarball)}  ${artifact.fileName}\n`);
    const { stdout } = await run("sha256sum", ["-c", artifact.sha256File], { cwd: artifact.dir });
    expect(stdout.trim()).toBe(`${artifact.fileName}: OK`);
  });

  it("ship: one top-level folder with compiled JS, production dependencies only, the bootstrap and the SBOM; no TypeScript, no tsx", () => {
    expect(readdirSync(extracted)).toEqual(["routeleader"]);
    expect(readdirSync(app).sort()).toEqual(["README.md", "SBOM.json", "bin", "bootstrap.sh", "conntrackd-sync.sh", "consul-acl-policy.hcl", "dist", "node-credentials.sh", "node_modules", "package-lock.json", "package.json"]);
    expect(existsSync(join(app, "dist/agent/cli.js"))).toBe(true);
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) (e.isDirectory() ? walk : (f: string) => files.push(f))(join(d, e.name));
    };
    walk(join(app, "dist"));
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    const names = [...bundledPackages(app).keys()].map((k) => k.slice(0, k.lastIndexOf("@")));
    for (const dev of ["tsx", "typescript", "vitest", "esbuild", "fast-check", "playwright-core", "@types/node", "@aws-sdk/client-cloudformation"]) expect(names).not.toContain(dev);
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies)) expect(names).toContain(dep);
    expect(readFileSync(join(app, "bootstrap.sh"), "utf8")).toBe(readFileSync(join(REPO, "scripts/bootstrap.sh"), "utf8"));
    expect(statSync(join(app, "bootstrap.sh")).mode & 0o111).not.toBe(0);
    expect(readFileSync(join(app, "node-credentials.sh"), "utf8")).toBe(readFileSync(join(REPO, "scripts/node-credentials.sh"), "utf8"));
    expect(readFileSync(join(app, "conntrackd-sync.sh"), "utf8")).toBe(readFileSync(join(REPO, "scripts/conntrackd-sync.sh"), "utf8"));
    expect(readFileSync(join(app, "consul-acl-policy.hcl"), "utf8")).toBe(readFileSync(join(REPO, "docs/consul-acl-policy.hcl"), "utf8"));
  });

  it("ship: every package the compiled agent imports is bundled (or a Node built-in)", async () => {
    const { builtinModules } = await import("node:module");
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) (e.isDirectory() ? walk : (f: string) => f.endsWith(".js") && files.push(f))(join(d, e.name));
    };
    walk(join(app, "dist"));
    const missing = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(f, "utf8").matchAll(/(?:^|\n)\s*import\s[^;]*?from\s+"([^"./][^"]*)"|import\("([^"./][^"]*)"\)/g)) {
        const spec = (m[1] ?? m[2])!;
        if (spec.startsWith("node:") || builtinModules.includes(spec)) continue;
        const pkgName = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
        if (!existsSync(join(app, "node_modules", pkgName, "package.json"))) missing.add(`${pkgName} (from ${f.slice(app.length + 1)})`);
      }
    }
    expect([...missing]).toEqual([]);
    // The esbuild bundle: the entry point and the chunks its verbs load on demand.
    expect(files).toContain(join(app, "dist/agent/cli.js"));
    expect(files.length).toBeGreaterThan(1);
  });

  it("ship: the SBOM lists every bundled package, with a licence, and nothing that is not bundled", () => {
    const sbom = JSON.parse(readFileSync(artifact.sbomFile, "utf8")) as { name: string; version: string; license: string; packages: { name: string; version: string; license: string }[] };
    expect(readFileSync(join(app, "SBOM.json"), "utf8")).toBe(readFileSync(artifact.sbomFile, "utf8"));
    expect(sbom).toMatchObject({ name: "routeleader", version: artifact.version, license: "Apache-2.0" });
    const bundled = bundledPackages(app);
    expect(bundled.size).toBeGreaterThan(20);
    expect(new Set(sbom.packages.map((p) => `${p.name}@${p.version}`))).toEqual(new Set(bundled.keys()));
    for (const p of sbom.packages) {
      expect(p.license, `${p.name}@${p.version}`).toMatch(/\S/);
      expect(p.license).not.toBe("UNKNOWN");
    }
  });

  it("ship: extracted outside the repository, plain node runs it: version, and validate on every example", async () => {
    // Nothing of the checkout is reachable from where the artifact lives: no node_modules in
    // any parent folder, no NODE_PATH, no tsx loader.
    for (let d = app; d !== dirname(d); d = dirname(d)) if (d !== app) expect(existsSync(join(d, "node_modules")), d).toBe(false);
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: extracted, LANG: "C" };
    const version = await run(process.execPath, [join(app, "dist/agent/cli.js"), "--version"], { cwd: extracted, env });
    expect(version.stdout.trim()).toBe(artifact.version);
    const wrapper = await run(join(app, "bin/routeleader"), ["version"], { cwd: extracted, env: { ...env, PATH: `${dirname(process.execPath)}:${env.PATH}` } });
    expect(wrapper.stdout.trim()).toBe(`routeleader ${artifact.version}`);
    for (const example of readdirSync(join(REPO, "examples")).filter((f) => f.endsWith(".yaml"))) {
      const res = await run(process.execPath, [join(app, "dist/agent/cli.js"), "validate", "--config", join(REPO, "examples", example)], { cwd: extracted, env });
      expect(res.stdout).toMatch(/: valid \(cluster /);
    }
  });

  it("ship: the artifact's validate stays lean on plain node: peak RSS under 100 MiB (the SDK is not loaded by it; issue #16)", async () => {
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: extracted, LANG: "C" };
    // GNU time's %M: the process's peak RSS in KiB (last line of stderr).
    const res = await run("/usr/bin/time", ["-f", "%M", process.execPath, join(app, "dist/agent/cli.js"), "validate", "--config", join(REPO, "examples", "nat-2az.yaml")], { cwd: extracted, env });
    const peakMib = Number(res.stderr.trim().split("\n").pop()) / 1024;
    expect(peakMib).toBeGreaterThan(10);
    expect(peakMib).toBeLessThan(100);
  });

  it("ship: a fresh clone of HEAD builds it from tracked files alone: the same entries (chunk hashes aside), and plain node runs it", async () => {
    const work = mkdtempSync(join(tmpdir(), "rl-clone-"));
    try {
      const clone = join(work, "clone");
      await run("git", ["clone", "--quiet", REPO, clone]);
      // The dependencies as npm ci installs them (the lock file's), not a copy of the checkout's work.
      symlinkSync(realpathSync(join(REPO, "node_modules")), join(clone, "node_modules"));
      const out = join(work, "out");
      await run("npm", ["run", "--silent", "release", "--", "--out", out], { cwd: clone, maxBuffer: 16 * 1024 * 1024 });
      const entries = async (tarball: string) => (await run("tar", ["-tzf", tarball], { maxBuffer: 16 * 1024 * 1024 })).stdout.split("\n").filter(Boolean).map((e) => e.replace(/-[A-Z0-9]{8}\.js$/, "-HASH.js")).sort();
      expect(await entries(join(out, artifact.fileName))).toEqual(await entries(artifact.tarball));
      await run("tar", ["-xzf", join(out, artifact.fileName), "-C", out]);
      const version = await run(process.execPath, [join(out, "routeleader/dist/agent/cli.js"), "--version"], { cwd: out, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: out } });
      expect(version.stdout.trim()).toBe(artifact.version);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 180_000);

  it("ship: a broken config is refused by the artifact with exit code 3, as from the source tree", async () => {
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: extracted };
    const bad = join(extracted, "bad.yaml");
    await run("sh", ["-c", `printf 'cluster: x\\nroutes: []\\nbogus: 1\\n' > ${bad}`]);
    const res = await run(process.execPath, [join(app, "dist/agent/cli.js"), "validate", "--config", bad], { cwd: extracted, env }).then(
      () => ({ code: 0, err: "" }),
      (e: { code: number; stderr: string }) => ({ code: e.code, err: e.stderr }),
    );
    expect(res.code).toBe(3);
    expect(res.err).toContain("invalid configuration");
  });
});
