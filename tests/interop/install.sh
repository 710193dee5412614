#!/usr/bin/env bash
# Installs the Node peer of the interop tests (node-nats-streaming, and ajv for the
# generated @ticketing/common-events package the tests write next to them; pinned by
# package-lock.json) into tests/interop/node_modules. Idempotent: does nothing when the
# pinned version is installed already.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/interop/install.sh: node and npm are needed for the interop tests" >&2
    exit 1
fi

# Every pinned dependency already at its version: nothing to do.
if node -e "
  const deps = require('./package.json').dependencies
  for (const [name, wanted] of Object.entries(deps)) {
    let installed = ''
    try { installed = require('./node_modules/' + name + '/package.json').version } catch (e) {}
    if (installed !== wanted) process.exit(1)
  }"; then
    echo "tests/interop: node-nats-streaming and ajv already installed"
    exit 0
fi

npm ci --no-audit --no-fund
