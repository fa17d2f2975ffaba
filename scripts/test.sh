#!/usr/bin/env bash
# The whole test suite. Installs what it needs first (scripts/setup.sh is idempotent and quick when done).
# Ends with vitest's summary and one plain line "tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_COLOR=1
report=$(mktemp /tmp/ddumbfs-vitest-XXXXXX.json)
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" || true
rm -f "$report"
exit "$status"
