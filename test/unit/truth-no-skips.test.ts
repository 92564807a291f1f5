import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * README: "A missing component fails the run — no suite is ever skipped." These hold that
 * promise where it can break: in the test sources (no skip, conditional skip or todo) and in
 * the summary `npm test` ends with (a skipped test fails the run).
 */

const REPO = join(import.meta.dirname, "..", "..");
const TEST_DIR = join(REPO, "test");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return /\.(ts|mts|js|mjs|cjs)$/.test(e.name) ? [path] : [];
  });
}

const S = "skip";
const SKIP_PATTERNS: RegExp[] = [
  new RegExp(`\\b(it|test|describe|suite|bench)\\.(${S}|${S}If|runIf|todo|only)\\b`),
  new RegExp(`\\.${S}If\\s*\\(`),
  new RegExp(`\\.runIf\\s*\\(`),
  new RegExp(`\\b(ctx|context|t|task)\\.${S}\\s*\\(`),
  new RegExp(`\\{\\s*${S}\\s*\\}\\s*\\)\\s*=>`),
];

describe("truth: no test can be skipped", () => {
  it("truth: no it.skip, describe.skip, skipIf, runIf, ctx.skip, todo or only anywhere under test/", () => {
    const found: string[] = [];
    // This file names the patterns it looks for, so it is the one file not scanned.
    for (const file of sources(TEST_DIR).filter((f) => f !== import.meta.filename)) {
      readFileSync(file, "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (SKIP_PATTERNS.some((p) => p.test(line))) found.push(`${relative(REPO, file)}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(found).toEqual([]);
  });

  it("truth: the patterns catch what they are for", () => {
    const samples = [`it.${S}("x", () => {})`, `describe.${S}("x", () => {})`, `it.${S}If(cond)("x", fn)`, `test.runIf(x)("y", fn)`, `ctx.${S}()`, `it("x", ({ ${S} }) => ${S}())`, `it.todo("later")`, `describe.only("x", fn)`];
    for (const s of samples) expect(SKIP_PATTERNS.some((p) => p.test(s)), s).toBe(true);
    expect(SKIP_PATTERNS.some((p) => p.test(`expect(result.action).toBe("${S}ped-gate")`))).toBe(false);
  });

  it("truth: the test summary exits non-zero when a test was skipped, and zero only when all passed", () => {
    const dir = mkdtempSync(join(tmpdir(), "rl-summary-"));
    try {
      const summary = (report: object): { code: number; out: string } => {
        const file = join(dir, "vitest.json");
        writeFileSync(file, JSON.stringify(report));
        try {
          return { code: 0, out: execFileSync(process.execPath, [join(REPO, "scripts", "test-summary.mjs"), file], { encoding: "utf8", stdio: "pipe" }) };
        } catch (err) {
          const e = err as { status: number; stdout: string; stderr: string };
          return { code: e.status, out: `${e.stdout}${e.stderr}` };
        }
      };
      const result = (status: string) => ({ name: "/x.test.ts", status: "passed", assertionResults: [{ status: "passed", fullName: "a" }, { status, fullName: "b" }] });
      const skipped = summary({ numPassedTests: 1, numFailedTests: 0, numPendingTests: 1, numTodoTests: 0, testResults: [result("skipped")] });
      expect(skipped.code).toBe(1);
      expect(skipped.out).toContain("Tests: 1 passed, 0 failed, 1 skipped");
      expect(skipped.out).toContain("/x.test.ts: b");
      expect(summary({ numPassedTests: 1, numFailedTests: 0, numPendingTests: 0, numTodoTests: 1, testResults: [result("todo")] }).code).toBe(1);
      const passed = summary({ numPassedTests: 2, numFailedTests: 0, numPendingTests: 0, numTodoTests: 0, testResults: [result("passed")] });
      expect(passed).toEqual({ code: 0, out: "Tests: 2 passed, 0 failed, 0 skipped\n" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
