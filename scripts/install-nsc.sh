#!/usr/bin/env bash
# Installs nsc v2.8.6 (the tool that makes NATS operator, account and user JWTs and
# .creds files) into $(go env GOPATH)/bin, reusing a binary that is already there. Safe
# to run again: it only builds when the binary is missing or is another version.
# tests/auth makes its credentials with it.
set -euo pipefail

VERSION="v2.8.6"
MODULE="github.com/nats-io/nsc/v2"

if ! command -v go >/dev/null 2>&1; then
    echo "install-nsc: 'go' is not on PATH; install Go to build nsc" >&2
    exit 1
fi

BIN_DIR="$(go env GOPATH)/bin"
BIN="$BIN_DIR/nsc"

# nsc built with go install reports version 0.0.0-dev; the module version is in the binary.
if [[ -x "$BIN" ]] && go version -m "$BIN" 2>/dev/null | grep -qE "^\s+mod\s+${MODULE}\s+${VERSION}\s"; then
    echo "install-nsc: reusing $BIN (${MODULE} ${VERSION})"
    exit 0
fi

# Not `go install ${MODULE}@${VERSION}`: that also asks the module proxy for the list of
# every version (to warn about a deprecated module), which the proxy may refuse. A
# throwaway module that requires this one exact version builds the same binary.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo "install-nsc: building ${MODULE}@${VERSION}"
go mod init nsc-build >/dev/null 2>&1
go get "${MODULE}@${VERSION}"
GOBIN="$BIN_DIR" go install -ldflags "-X main.version=${VERSION#v}" "${MODULE}"

go version -m "$BIN" | grep -E "^\s+mod\s+${MODULE}\s"
