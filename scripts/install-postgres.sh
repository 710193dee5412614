#!/usr/bin/env bash
# Installs Debian's PostgreSQL server programs (initdb, postgres, pg_ctl) for the outbox
# tests, which start their own throwaway server. Safe to run again: it does nothing when
# initdb is already there. The package's own cluster is not needed by the tests.
set -euo pipefail

find_initdb() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if find_initdb; then
    echo "install-postgres: reusing $(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres: no apt-get here; install PostgreSQL's server programs yourself" >&2
    exit 1
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-postgres: apt-get install postgresql"
if ! $SUDO apt-get install -y -q --no-install-recommends postgresql; then
    # A fresh machine has no package lists yet.
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends postgresql
fi

if ! find_initdb; then
    echo "install-postgres: postgresql installed, but no /usr/lib/postgresql/*/bin/initdb" >&2
    exit 1
fi
ls -d /usr/lib/postgresql/*/bin/initdb
