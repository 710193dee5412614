#!/usr/bin/env bash
# Installs the pinned Node tools of the contract tests from package-lock.json: the
# TypeScript compiler, the AsyncAPI schemas, and verdaccio (the private npm registry the
# generated package is published to). Idempotent: does nothing when node_modules
# matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
  echo "tests/typescript/install.sh: npm is not installed; install Node.js 20 or later" >&2
  exit 1
fi
# npm writes node_modules/.package-lock.json after every install; older than the lock
# file means the lock changed since.
if [ -f node_modules/.package-lock.json ] && [ ! package-lock.json -nt node_modules/.package-lock.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
