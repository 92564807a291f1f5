import { execFile } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { defaultGoBuilds, motoVenv } from "../../scripts/licence-check.js";
import { classifyText, goPackages, judge, loadAllowList, npmPackages, pythonPackages, report, type PackageLicence } from "../../scripts/lib/licences.js";

/**
 * Everything the tests build and run is open source: the Go modules compiled into the test
 * Consul and the metadata mock, the npm production dependencies, the Python packages of the
 * moto venv (scripts/licence-check.ts). Needs install-deps to have run (npm test does).
 */

const REPO = join(import.meta.dirname, "..", "..");
const run = promisify(execFile);
const ALLOW = loadAllowList(join(REPO, "scripts/licence-allow.json"));

/** The opening of a Business Source License file, as HashiCorp's modules from 1.17 on carry it. */
const BUSL_HEADER = `License text copyright (c) 2020 MariaDB Corporation Ab, All Rights Reserved.
"Business Source License" is a trademark of MariaDB Corporation Ab.

Parameters

Licensor:             HashiCorp, Inc.
Licensed Work:        Consul Version 1.17.0 or later. The Licensed Work is (c) 2024
                      HashiCorp, Inc.
Change Date:          Four years from the date the Licensed Work is published.
Change License:       MPL 2.0

Business Source License 1.1
`;

const temps: string[] = [];
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

function chmodTree(dir: string): void {
  chmodSync(dir, 0o755);
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) chmodTree(p);
    else chmodSync(p, 0o644);
  }
}

describe("licence check", () => {
  it("licence: every Go module in the Consul and metadata-mock builds, npm production dependency and moto venv package is open source", async () => {
    const pkgs: PackageLicence[] = [];
    for (const b of defaultGoBuilds(REPO)) pkgs.push(...(await goPackages(b)));
    const npm = npmPackages(REPO);
    pkgs.push(...npm.packages);
    pkgs.push(...(await pythonPackages(motoVenv(REPO))));
    const r = report(pkgs, ALLOW);
    console.log(r.summary);
    expect(r.failures.map((f) => `${f.pkg.ecosystem} ${f.pkg.id} (${f.pkg.usedBy}): ${f.problem}`)).toEqual([]);

    // Each source was really read, and the Consul build is 1.16.1 with its MPL-2.0 sub-modules.
    for (const usedBy of ["consul", "aemm", "npm", "moto venv"]) expect(pkgs.filter((p) => p.usedBy === usedBy).length, usedBy).toBeGreaterThan(usedBy === "consul" ? 100 : 10);
    const consul = new Map(r.results.filter((x) => x.pkg.usedBy === "consul").map((x) => [x.pkg.id, x.licences.join("; ")]));
    for (const id of [
      "github.com/hashicorp/consul@v1.16.1",
      "github.com/hashicorp/consul/api@v1.24.0",
      "github.com/hashicorp/consul/envoyextensions@v0.4.1",
      "github.com/hashicorp/consul/proto-public@v0.4.1",
      "github.com/hashicorp/consul/sdk@v0.14.1",
      "github.com/hashicorp/consul/troubleshoot@v0.3.1",
    ]) {
      expect(consul.get(id), id).toMatch(/^MPL-2\.0 \(LICENSE\)/);
    }
  });

  it("licence: a BUSL module added to the Consul wrapper fails the check, naming the module and its licence", async () => {
    // The real wrapper, with envoyextensions taken from a directory whose LICENSE is BUSL (as
    // v0.7.3, which the v1.19.2 build pins, is): same code, so the build list is unchanged.
    const work = mkdtempSync(join(tmpdir(), "rl-licence-busl-"));
    temps.push(work);
    cpSync(join(REPO, "scripts/deps/consul"), work, { recursive: true });
    const { stdout: modcache } = await run("go", ["env", "GOMODCACHE"]);
    const original = join(modcache.trim(), "github.com/hashicorp/consul/envoyextensions@v0.4.1");
    expect(existsSync(original), `${original} (run scripts/install-deps.sh consul)`).toBe(true);
    const busl = join(work, "envoyextensions-busl");
    cpSync(original, busl, { recursive: true });
    chmodTree(busl);
    writeFileSync(join(busl, "LICENSE"), BUSL_HEADER);
    const gomod = readFileSync(join(work, "go.mod"), "utf8");
    const pinned = "github.com/hashicorp/consul/envoyextensions => github.com/hashicorp/consul/envoyextensions v0.4.1";
    expect(gomod).toContain(pinned);
    writeFileSync(join(work, "go.mod"), gomod.replace(pinned, "github.com/hashicorp/consul/envoyextensions => ./envoyextensions-busl"));

    const res = await run("npx", ["tsx", "scripts/licence-check.ts", "--go-only", "--wrapper", `consul=${work}=github.com/hashicorp/consul`], { cwd: REPO }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: `${e.stdout}${e.stderr}` }),
    );
    console.log(res.out);
    expect(res.code).toBe(1);
    expect(res.out).toMatch(/licence: FAIL go github\.com\/hashicorp\/consul\/envoyextensions => \.\/envoyextensions-busl \(consul\): not an open-source licence: BUSL-1\.1 \(Business Source License\) \(LICENSE\)/);
    expect(res.out).toMatch(/licence: \d+ packages checked, 1 failed/);
  });

  it("licence: a source-available licence fails whatever else the package declares; the allow-list never overrides it", () => {
    const pkg = (files: Array<[string, string]>, extra: Partial<PackageLicence> = {}): PackageLicence => ({
      ecosystem: "npm",
      id: "some-pkg@1.0.0",
      usedBy: "npm",
      files: files.map(([name, text]) => ({ name, text })),
      ...extra,
    });
    const allowAll = [{ ecosystem: "npm" as const, package: "some-pkg", licence: "MIT", reason: "test" }];
    // BUSL names its Change License (MPL 2.0): still BUSL.
    expect(classifyText(BUSL_HEADER).notOpen).toEqual(["BUSL-1.1 (Business Source License)"]);
    expect(judge(pkg([["LICENSE", BUSL_HEADER]], { spdx: "MIT" }), allowAll)).toMatchObject({ ok: false, problem: expect.stringContaining("BUSL-1.1") });
    expect(judge(pkg([["LICENSE", "Server Side Public License\nVERSION 1, OCTOBER 16, 2018"]]), allowAll).ok).toBe(false);
    expect(judge(pkg([["LICENSE", "Elastic License 2.0\n\nAcceptance\nBy using the software, you agree to all of the terms and conditions below."]]), allowAll).ok).toBe(false);
    expect(judge(pkg([["LICENSE", 'Permission is hereby granted, free of charge, to any person obtaining a copy ...\n"Commons Clause" License Condition v1.0']]), allowAll).ok).toBe(false);
    expect(judge(pkg([], { spdx: "SSPL-1.0" }), []).ok).toBe(false);
    expect(judge(pkg([], { spdx: "UNLICENSED" }), []).ok).toBe(false);
    // Open licences by their texts, and metadata only where there is no file.
    expect(judge(pkg([["LICENSE", "Permission is hereby granted, free of charge, to any person obtaining a copy\nof this software"]]), []).licences).toEqual(["MIT (LICENSE)"]);
    expect(judge(pkg([], { spdx: "Apache-2.0 OR MIT" }), []).ok).toBe(true);
    expect(judge(pkg([["LICENSE", "All rights reserved."]]), []).ok).toBe(false);
    // A Go module has no licence metadata: an unreadable licence fails unless allow-listed, with a reason.
    const goMod: PackageLicence = { ecosystem: "go", id: "example.com/m@v1.0.0", usedBy: "consul", files: [] };
    expect(judge(goMod, []).ok).toBe(false);
    expect(judge(goMod, [{ ecosystem: "go", package: "example.com/m", licence: "MIT", reason: "licence in the README" }]).ok).toBe(true);
    // The committed allow-list gives a reason for every entry.
    for (const e of ALLOW) expect(e.reason.length, e.package).toBeGreaterThan(20);
  });
});
