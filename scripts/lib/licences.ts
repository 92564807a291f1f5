/**
 * Licence check of everything the tests build, install and run: the Go modules compiled into
 * the test Consul and the metadata mock, the npm production dependencies, and the Python
 * packages in the moto venv. Licences are told from the text of each package's licence files
 * by characteristic phrases (and, where a package ships no file, from the licence its own
 * metadata declares); a source-available licence (Business Source License, SSPL, Elastic
 * License, Commons Clause, ...) fails the check whatever else the package says.
 *
 * Used by scripts/licence-check.ts and test/integration/licence.test.ts.
 */
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export type Ecosystem = "go" | "npm" | "python";

/** Licences that are not open source: any one of them in a package fails the check. */
const NOT_OPEN: ReadonlyArray<readonly [string, RegExp]> = [
  ["BUSL-1.1 (Business Source License)", /business source license/],
  ["SSPL-1.0 (Server Side Public License)", /server side public license/],
  ["Elastic License", /elastic license/],
  ["Commons Clause", /commons clause/],
  ["PolyForm", /polyform/],
  ["Confluent Community License", /confluent community license/],
  ["Redis Source Available License", /redis source available license/],
  ["Functional Source License", /functional source license/],
  ["Fair Source License", /fair source license/],
  ["Sustainable Use License", /sustainable use license/],
  ["Cockroach Community License", /cockroach community license/],
];

/** Open-source licences by phrases their texts carry (normalized: lower case, one space). */
const OPEN: ReadonlyArray<readonly [string, (t: string) => boolean]> = [
  ["Apache-2.0", (t) => /apache license,? (version )?2\.0/.test(t) || t.includes("licensed under the apache license")],
  ["MPL-2.0", (t) => /mozilla public license,? (version |v\.? ?)?2\.0/.test(t)],
  ["MIT", (t) => t.includes("permission is hereby granted, free of charge, to any person obtaining a copy")],
  ["ISC", (t) => /permission to use, copy, modify, and(\/or)? distribute this software for any purpose with or without fee is hereby granted/.test(t)],
  [
    "BSD-3-Clause",
    (t) =>
      t.includes("redistribution and use in source and binary forms") &&
      /(neither the name|names? of (its|the|their|any) [a-z ]*contributors may (not )?be used|may not be used to endorse or promote)/.test(t),
  ],
  ["BSD-2-Clause", (t) => t.includes("redistribution and use in source and binary forms")],
  ["Unlicense", (t) => t.includes("this is free and unencumbered software released into the public domain")],
  ["CC0-1.0", (t) => t.includes("cc0 1.0 universal") || t.includes("creative commons zero")],
  ["BlueOak-1.0.0", (t) => t.includes("blue oak model license")],
  ["Zlib", (t) => t.includes("permission is granted to anyone to use this software for any purpose, including commercial applications")],
  ["Python-2.0 (PSF)", (t) => t.includes("python software foundation license")],
  ["HPND", (t) => t.includes("historical permission notice and disclaimer")],
  ["AGPL", (t) => t.includes("gnu affero general public license")],
  ["LGPL", (t) => t.includes("gnu lesser general public license") || t.includes("gnu library general public license")],
  ["GPL", (t) => t.includes("gnu general public license")],
  ["EPL-2.0", (t) => t.includes("eclipse public license")],
];

export function normalize(text: string): string {
  return text
    .toLowerCase()
    .replace(/^[ \t]*(#|\/\/|\*|;)+/gm, " ") // comment leaders of licence headers
    .replace(/\s+/g, " ");
}

export interface TextVerdict {
  open: string[];
  notOpen: string[];
}

/** What a licence text is, by its phrases. A BSD-3 text is not also reported as BSD-2. */
export function classifyText(text: string): TextVerdict {
  const t = normalize(text);
  const notOpen = NOT_OPEN.filter(([, re]) => re.test(t)).map(([id]) => id);
  let open = OPEN.filter(([, has]) => has(t)).map(([id]) => id);
  if (open.includes("BSD-3-Clause")) open = open.filter((id) => id !== "BSD-2-Clause");
  // MPL-2.0 names the GNU licences as its "Secondary Licenses"; LGPL and AGPL texts name the GPL.
  if (open.includes("MPL-2.0")) open = open.filter((id) => !["AGPL", "LGPL", "GPL"].includes(id));
  if (open.includes("AGPL") || open.includes("LGPL")) open = open.filter((id) => id !== "GPL");
  // The PSF licence text carries Python's history: the CWI (ISC-like) licence and GPL remarks.
  if (open.includes("Python-2.0 (PSF)")) open = ["Python-2.0 (PSF)", ...open.filter((id) => !["ISC", "GPL", "Python-2.0 (PSF)"].includes(id))];
  return { open, notOpen };
}

/** SPDX identifiers (as in package.json `license` or Python License-Expression) that are open source. */
const OPEN_SPDX = new Set([
  "MIT", "MIT-0", "ISC", "0BSD", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "MPL-2.0", "BlueOak-1.0.0", "Unlicense", "CC0-1.0",
  "Python-2.0", "PSF-2.0", "CNRI-Python", "Zlib", "HPND", "EPL-2.0", "LGPL-2.1", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0", "LGPL-3.0-only",
  "LGPL-3.0-or-later", "GPL-2.0", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0", "GPL-3.0-only", "GPL-3.0-or-later", "CC-BY-4.0",
]);
const NOT_OPEN_SPDX = new Map([
  ["BUSL-1.1", "BUSL-1.1 (Business Source License)"],
  ["SSPL-1.0", "SSPL-1.0 (Server Side Public License)"],
  ["Elastic-2.0", "Elastic License"],
  ["UNLICENSED", "UNLICENSED (no licence granted)"],
]);

/** An SPDX expression: open if every term of an AND (or any term of an OR) is open. */
export function classifySpdx(expression: string): TextVerdict {
  const expr = expression.trim();
  if (/^see licen[cs]e in/i.test(expr)) return { open: [], notOpen: [] }; // the named file decides
  const terms = expr.replace(/[()]/g, " ").split(/\s+(?:AND|OR)\s+/i).map((t) => t.replace(/\s+WITH\s+.*/i, "").replace(/\+$/, "").trim());
  const notOpen = terms.filter((t) => NOT_OPEN_SPDX.has(t)).map((t) => NOT_OPEN_SPDX.get(t) as string);
  const known = terms.filter((t) => OPEN_SPDX.has(t));
  const isOr = /\s+OR\s+/i.test(expr) && !/\s+AND\s+/i.test(expr);
  const open = notOpen.length === 0 && (isOr ? known.length > 0 : known.length === terms.length) ? [expr] : [];
  return { open, notOpen };
}

/** Python trove classifiers: "License :: OSI Approved :: ..." is open; the rest decides nothing. */
export function classifyClassifiers(classifiers: readonly string[]): TextVerdict {
  const lic = classifiers.filter((c) => c.startsWith("License ::"));
  const open = lic.filter((c) => c.startsWith("License :: OSI Approved")).map((c) => c.replace(/^License :: OSI Approved :: /, ""));
  const notOpen = lic.filter((c) => /proprietary|free for non-commercial/i.test(c));
  return { open, notOpen };
}

export interface LicenceFile {
  name: string;
  text: string;
}

export interface PackageLicence {
  ecosystem: Ecosystem;
  /** name@version, as it should be named in a failure. */
  id: string;
  /** Where the build or install uses it: "consul", "aemm", "npm", "moto venv". */
  usedBy: string;
  files: LicenceFile[];
  /** Declared licence metadata (npm `license`, Python License-Expression / License / classifiers). */
  spdx?: string | undefined;
  licenseField?: string | undefined;
  classifiers?: string[] | undefined;
}

export interface AllowEntry {
  ecosystem: Ecosystem;
  /** name@version, or name alone for any version. */
  package: string;
  licence: string;
  reason: string;
}

export interface Result {
  pkg: PackageLicence;
  ok: boolean;
  /** The licences found, with where they were read. */
  licences: string[];
  problem?: string;
}

function idName(id: string): string {
  return id.slice(0, id.lastIndexOf("@") > 0 ? id.lastIndexOf("@") : id.length);
}

/** The verdict on one package: a not-open licence anywhere fails it, however it is declared. */
export function judge(pkg: PackageLicence, allow: readonly AllowEntry[]): Result {
  const open: string[] = [];
  const notOpen: string[] = [];
  for (const f of pkg.files) {
    const v = classifyText(f.text);
    open.push(...v.open.map((id) => `${id} (${f.name})`));
    notOpen.push(...v.notOpen.map((id) => `${id} (${f.name})`));
  }
  const meta: TextVerdict[] = [];
  if (pkg.spdx) meta.push(classifySpdx(pkg.spdx));
  if (pkg.licenseField) {
    // Free text: an SPDX id, a licence name, or a whole licence text.
    const asSpdx = classifySpdx(pkg.licenseField);
    meta.push(asSpdx.open.length || asSpdx.notOpen.length ? asSpdx : classifyText(pkg.licenseField));
  }
  if (pkg.classifiers?.length) meta.push(classifyClassifiers(pkg.classifiers));
  const metaOpen = meta.flatMap((v) => v.open.map((id) => `${id} (metadata)`));
  notOpen.push(...meta.flatMap((v) => v.notOpen.map((id) => `${id} (metadata)`)));

  if (notOpen.length > 0) return { pkg, ok: false, licences: [...notOpen, ...open], problem: `not an open-source licence: ${notOpen.join(", ")}` };
  if (open.length > 0) return { pkg, ok: true, licences: open };
  // Go modules carry no licence metadata: their licence file is the only source.
  if (metaOpen.length > 0 && pkg.ecosystem !== "go") return { pkg, ok: true, licences: metaOpen };
  const entry = allow.find((a) => a.ecosystem === pkg.ecosystem && (a.package === pkg.id || a.package === idName(pkg.id)));
  if (entry) return { pkg, ok: true, licences: [`${entry.licence} (allow-list: ${entry.reason})`] };
  const what = pkg.files.length ? `licence file(s) ${pkg.files.map((f) => f.name).join(", ")} not recognised` : "no licence file";
  return { pkg, ok: false, licences: [], problem: `${what}${pkg.ecosystem !== "go" ? " and no open-source licence in its metadata" : ""} (not in the allow-list)` };
}

const LICENCE_FILE = /^(un)?licen[cs]e|^copying|^copyright$|[-_.]licen[cs]e(\.[a-z]+)?$/i;
/** Source files named like licences (go-openapi's license.go) are code, not licence texts. */
const SOURCE_FILE = /\.(go|[cm]?[jt]s|py[ci]?|json|c|h|rs|java|rb|sh)$/i;

/** The licence files at the top of a package or module directory. */
export function licenceFilesIn(dir: string): LicenceFile[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => LICENCE_FILE.test(n) && !SOURCE_FILE.test(n) && statSync(join(dir, n)).isFile())
    .sort()
    .map((n) => ({ name: n, text: readFileSync(join(dir, n), "utf8") }));
}

// ---- Go ---------------------------------------------------------------------------------

export interface GoBuild {
  /** Name used in reports: "consul", "aemm". */
  name: string;
  /** The wrapper module directory (scripts/deps/...). */
  wrapper: string;
  /** The main package the wrapper builds. */
  mainPackage: string;
  /** GOFLAGS for the build, as install-deps uses them. */
  goflags: string;
}

/** GOFLAGS of a wrapper: its build.env's GOFLAGS line, else install-deps' default -mod=mod. */
export function wrapperGoflags(wrapper: string): string {
  const env = join(wrapper, "build.env");
  if (existsSync(env)) {
    const m = /^GOFLAGS=(.*)$/m.exec(readFileSync(env, "utf8"));
    if (m) return (m[1] as string).trim();
  }
  return "-mod=mod";
}

/**
 * The modules whose packages are compiled into the wrapper's main package, with their licence
 * files: `go list -deps` in a copy of the wrapper (with -mod=mod, go may edit go.mod; the
 * repository's copy stays as it is), with install-deps' environment (GOWORK=off,
 * GOTOOLCHAIN=local, CGO_ENABLED=0). Files are read before the copy goes, since a module
 * replaced by a local directory lives in it.
 */
export async function goPackages(build: GoBuild): Promise<PackageLicence[]> {
  const work = mkdtempSync(join(tmpdir(), `rl-licence-${build.name}-`));
  try {
    cpSync(build.wrapper, work, { recursive: true });
    const env = { ...process.env, GOWORK: "off", GOTOOLCHAIN: "local", CGO_ENABLED: "0", GOFLAGS: build.goflags };
    const format = "{{with .Module}}{{.Path}}\t{{.Version}}\t{{.Dir}}{{with .Replace}}\t{{.Path}}\t{{.Version}}\t{{.Dir}}{{end}}{{end}}";
    const { stdout } = await run("go", ["list", "-deps", "-f", format, build.mainPackage], { cwd: work, env, maxBuffer: 64 * 1024 * 1024 });
    const byId = new Map<string, PackageLicence>();
    for (const line of stdout.split("\n")) {
      if (!line.trim()) continue;
      const [path, version, dir, rPath, rVersion, rDir] = line.split("\t") as string[];
      // A replacement by another module version is named as that module; by a directory, as "path => dir".
      const local = rPath !== undefined && (rPath.startsWith(".") || rPath.startsWith("/"));
      const name = rPath === undefined ? (path as string) : local ? `${path} => ${rPath}` : rPath;
      const ver = rPath === undefined ? (version ?? "") : (rVersion ?? "");
      const moduleDir = rPath === undefined ? (dir ?? "") : (rDir ?? "");
      const id = ver ? `${name}@${ver}` : name;
      if (!byId.has(id)) byId.set(id, { ecosystem: "go", id, usedBy: build.name, files: moduleDir ? licenceFilesIn(moduleDir) : [] });
    }
    return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// ---- npm --------------------------------------------------------------------------------

interface LockEntry {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  license?: string;
}

/**
 * The production dependency tree: every package-lock.json entry not marked dev, read from its
 * installed directory. An optional package not installed on this platform is skipped.
 */
export function npmPackages(repo: string): { packages: PackageLicence[]; skippedOptional: string[] } {
  const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
  const packages: PackageLicence[] = [];
  const skippedOptional: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path || entry.dev) continue;
    const dir = join(repo, path);
    const name = path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
    if (!existsSync(join(dir, "package.json"))) {
      if (entry.optional) {
        skippedOptional.push(`${name}@${entry.version ?? "?"}`);
        continue;
      }
      throw new Error(`${name} is a production dependency in package-lock.json but ${dir} is not installed: run 'npm ci'`);
    }
    const pj = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version?: string; license?: unknown; licenses?: unknown };
    let spdx: string | undefined;
    if (typeof pj.license === "string") spdx = pj.license;
    else if (pj.license && typeof pj.license === "object" && "type" in pj.license) spdx = String((pj.license as { type: unknown }).type);
    else if (Array.isArray(pj.licenses)) spdx = pj.licenses.map((l: { type?: string }) => l.type ?? "").join(" OR ");
    packages.push({ ecosystem: "npm", id: `${name}@${pj.version ?? entry.version ?? "?"}`, usedBy: "npm", files: licenceFilesIn(dir), spdx });
  }
  return { packages, skippedOptional };
}

// ---- Python -----------------------------------------------------------------------------

interface PyDist {
  name: string;
  version: string;
  licenseExpression: string | null;
  license: string | null;
  classifiers: string[];
  files: LicenceFile[];
}

/** Every distribution installed in a venv, read by the venv's own importlib.metadata. */
export async function pythonPackages(venv: string, usedBy = "moto venv"): Promise<PackageLicence[]> {
  const helper = join(import.meta.dirname, "python-licences.py");
  const { stdout } = await run(join(venv, "bin", "python"), [helper], { maxBuffer: 64 * 1024 * 1024 });
  const dists = JSON.parse(stdout) as PyDist[];
  return dists.map((d) => ({
    ecosystem: "python",
    id: `${d.name}@${d.version}`,
    usedBy,
    files: d.files,
    spdx: d.licenseExpression ?? undefined,
    licenseField: d.license ?? undefined,
    classifiers: d.classifiers,
  }));
}

// ---- report -----------------------------------------------------------------------------

export function loadAllowList(file: string): AllowEntry[] {
  const list = JSON.parse(readFileSync(file, "utf8")) as { entries: AllowEntry[] };
  for (const e of list.entries) {
    if (!e.package || !e.ecosystem || !e.licence || !e.reason?.trim()) throw new Error(`${file}: every entry needs ecosystem, package, licence and a reason: ${JSON.stringify(e)}`);
  }
  return list.entries;
}

export interface Report {
  results: Result[];
  failures: Result[];
  /** Allow-list entries no checked package needed. */
  unusedAllow: AllowEntry[];
  summary: string;
}

export function report(pkgs: readonly PackageLicence[], allow: readonly AllowEntry[], notes: readonly string[] = []): Report {
  const results = pkgs.map((p) => judge(p, allow));
  const failures = results.filter((r) => !r.ok);
  const used = new Set(results.flatMap((r) => r.licences.filter((l) => l.includes("allow-list")).map(() => r.pkg)).map((p) => p.id));
  const checked = new Set(pkgs.map((p) => p.ecosystem));
  const unusedAllow = allow.filter((a) => checked.has(a.ecosystem) && ![...used].some((id) => id === a.package || idName(id) === a.package));
  const groups = new Map<string, Result[]>();
  for (const r of results) {
    const key = `${r.pkg.ecosystem} (${r.pkg.usedBy})`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const lines = [...groups].map(([key, rs]) => {
    const tally = new Map<string, number>();
    for (const r of rs.filter((x) => x.ok)) {
      const id = (r.licences[0] ?? "?").replace(/ \(.*$/, "");
      tally.set(id, (tally.get(id) ?? 0) + 1);
    }
    const by = [...tally].sort((a, b) => b[1] - a[1]).map(([id, n]) => `${id} ${n}`).join(", ");
    return `licence: ${key}: ${rs.length} checked, ${rs.length - rs.filter((x) => !x.ok).length} open source${rs.some((x) => !x.ok) ? `, ${rs.filter((x) => !x.ok).length} FAILED` : ""} [${by}]`;
  });
  for (const f of failures) lines.push(`licence: FAIL ${f.pkg.ecosystem} ${f.pkg.id} (${f.pkg.usedBy}): ${f.problem}`);
  for (const a of unusedAllow) lines.push(`licence: note: allow-list entry ${a.ecosystem} ${a.package} was not needed`);
  lines.push(...notes.map((n) => `licence: note: ${n}`));
  lines.push(`licence: ${results.length} packages checked, ${failures.length} failed`);
  return { results, failures, unusedAllow, summary: lines.join("\n") };
}
