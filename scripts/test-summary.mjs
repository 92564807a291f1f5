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
process.exit(failed > 0 || passed === 0 ? 1 : 0);
