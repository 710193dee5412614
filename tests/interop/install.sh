#!/usr/bin/env bash
# Installs the Node peer of the interop tests (node-nats-streaming, pinned by
# package-lock.json) into tests/interop/node_modules. Idempotent: does nothing when the
# pinned version is installed already.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/interop/install.sh: node and npm are needed for the interop tests" >&2
    exit 1
fi

wanted="$(node -p "require('./package.json').dependencies['node-nats-streaming']")"
installed="$(node -p "try { require('./node_modules/node-nats-streaming/package.json').version } catch (e) { '' }")"
if [[ "$installed" == "$wanted" ]]; then
    echo "tests/interop: node-nats-streaming $installed already installed"
    exit 0
fi

npm ci --no-audit --no-fund
