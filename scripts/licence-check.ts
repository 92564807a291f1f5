/**
 * Licence check of what the tests build and run (`npm test` runs it as
 * test/integration/licence.test.ts): every Go module compiled into the test Consul
 * (scripts/deps/consul/) and the metadata mock (scripts/deps/aemm/), every npm production
 * dependency, every Python package in the moto venv. Exits 1 naming each package whose licence
 * is not open source or cannot be told.
 *
 *   tsx scripts/licence-check.ts [--go-only|--no-python] [--wrapper name=dir=mainpkg ...]
 *
 * Needs install-deps to have run (module cache, node_modules, the moto venv).
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { goPackages, loadAllowList, npmPackages, pythonPackages, report, wrapperGoflags, type GoBuild, type PackageLicence } from "./lib/licences.js";

const REPO = join(import.meta.dirname, "..");

/** The wrappers install-deps builds by default. */
export function defaultGoBuilds(repo = REPO): GoBuild[] {
  return [
    { name: "consul", wrapper: join(repo, "scripts/deps/consul"), mainPackage: "github.com/hashicorp/consul", goflags: wrapperGoflags(join(repo, "scripts/deps/consul")) },
    { name: "aemm", wrapper: join(repo, "scripts/deps/aemm"), mainPackage: "github.com/aws/amazon-ec2-metadata-mock/cmd", goflags: wrapperGoflags(join(repo, "scripts/deps/aemm")) },
  ];
}

/** The moto venv install-deps made: its version is install-deps' MOTO_VERSION. */
export function motoVenv(repo = REPO): string {
  const cache = process.env.ROUTELEADER_CACHE ?? join(homedir(), ".cache", "routeleader");
  const m = /^MOTO_VERSION=(\S+)$/m.exec(readFileSync(join(repo, "scripts/install-deps.sh"), "utf8"));
  if (!m) throw new Error("MOTO_VERSION not found in scripts/install-deps.sh");
  return join(cache, `moto-${m[1]}`);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let builds = defaultGoBuilds();
  const extra = args.flatMap((a, i) => (a === "--wrapper" ? [args[i + 1] as string] : []));
  if (extra.length) {
    builds = extra.map((spec) => {
      const [name, wrapper, mainPackage] = spec.split("=") as [string, string, string];
      return { name, wrapper, mainPackage, goflags: wrapperGoflags(wrapper) };
    });
  }
  const goOnly = args.includes("--go-only");
  const pkgs: PackageLicence[] = [];
  const notes: string[] = [];
  for (const b of builds) pkgs.push(...(await goPackages(b)));
  if (!goOnly) {
    const npm = npmPackages(REPO);
    pkgs.push(...npm.packages);
    if (npm.skippedOptional.length) notes.push(`optional npm packages not installed on this platform, not checked: ${npm.skippedOptional.join(", ")}`);
    if (!args.includes("--no-python")) {
      const venv = motoVenv();
      if (!existsSync(join(venv, "bin", "python"))) throw new Error(`no moto venv at ${venv}: run scripts/install-deps.sh moto`);
      pkgs.push(...(await pythonPackages(venv)));
    }
  }
  const r = report(pkgs, loadAllowList(join(REPO, "scripts/licence-allow.json")), notes);
  if (args.includes("--verbose")) for (const x of r.results) console.log(`${x.ok ? "ok  " : "FAIL"} ${x.pkg.ecosystem} ${x.pkg.id}: ${x.ok ? x.licences.join("; ") : x.problem}`);
  console.log(r.summary);
  process.exitCode = r.failures.length ? 1 : 0;
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
