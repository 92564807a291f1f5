// Prints the closing line CI reads ("Tests: N passed, N failed, N skipped") from vitest's JSON.
import { readFileSync } from "node:fs";

const file = process.argv[2] ?? "test-results/vitest.json";
let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch (err) {
  console.error(`[test] no vitest report at ${file}: ${err.message}`);
  process.exit(1);
}
const failedSuites = report.testResults.filter((r) => r.status === "failed" && r.assertionResults.length === 0).length;
const passed = report.numPassedTests;
const failed = report.numFailedTests + failedSuites;
const skipped = report.numPendingTests + report.numTodoTests;
console.log(`Tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
// README: "no suite is ever skipped". A skipped or todo test fails the run like a failed one.
if (skipped > 0) {
  const names = report.testResults.flatMap((r) => r.assertionResults.filter((a) => a.status === "skipped" || a.status === "pending" || a.status === "todo").map((a) => `${r.name}: ${a.fullName}`));
  console.error(`[test] ${skipped} test(s) skipped; every test must run:\n${names.slice(0, 20).join("\n")}`);
}
process.exit(failed > 0 || skipped > 0 || passed === 0 ? 1 : 0);
