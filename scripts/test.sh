#!/usr/bin/env bash
# The whole test suite. Installs what it needs first (scripts/setup.sh is idempotent and quick when done).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run "$@"
