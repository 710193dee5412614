#!/usr/bin/env bash
# Installs the Node JetStream peer of the migration tests (the official `nats` client,
# pinned by tests/migration/node/package-lock.json) into tests/migration/node/node_modules.
# Idempotent: does nothing when the pinned version is installed already. The migration
# tests also use the NATS Streaming peer of tests/interop (tests/interop/install.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/node"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/migration/install.sh: node and npm are needed for the migration tests" >&2
    exit 1
fi

if node -e "
  const deps = require('./package.json').dependencies
  for (const [name, wanted] of Object.entries(deps)) {
    let installed = ''
    try { installed = require('./node_modules/' + name + '/package.json').version } catch (e) {}
    if (installed !== wanted) process.exit(1)
  }"; then
    echo "tests/migration: nats already installed"
    exit 0
fi

npm ci --no-audit --no-fund
