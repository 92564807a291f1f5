#!/usr/bin/env bash
# The one test command (`npm test`): installs what the suites need (npm packages, Consul,
# the metadata mock, moto, Debian tools), type-checks, runs every suite, prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
bash scripts/install-deps.sh
echo "[test] dependencies ready in $((SECONDS - start)) s"

echo "[test] type-check"
npx tsc -p tsconfig.json --noEmit

mkdir -p test-results
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json=test-results/vitest.json "$@"
rc=$?
set -e
node scripts/test-summary.mjs test-results/vitest.json || rc=1
echo "[test] finished in $((SECONDS - start)) s with exit code $rc"
exit "$rc"
