"""Credentials as a NATS deployment makes them: ``nsc`` operators, accounts and users.

``Operator`` keeps one operator's nsc store in a directory of its own (``nsc -H``), so
tests never touch a developer's ``~/.local/share/nats``. Users come out as ``.creds``
files; the server side is the config text of a memory resolver (reloaded with SIGHUP)
or of a NATS resolver (updated with ``nsc push``, as an operator does in production).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from common_events.testing.servers import go_bin_dir
from tests.support.servers import missing

INSTALL_HINT = "run scripts/install-nsc.sh (builds github.com/nats-io/nsc/v2 v2.8.6)"


def find_nsc() -> Path:
    """``nsc`` from ``$(go env GOPATH)/bin`` or ``PATH``, or skip (fail in CI)."""
    bin_dir = go_bin_dir()
    if bin_dir is not None and (bin_dir / "nsc").is_file():
        return bin_dir / "nsc"
    found = shutil.which("nsc")
    if found:
        return Path(found)
    missing(f"nsc not found in $(go env GOPATH)/bin or PATH; {INSTALL_HINT}")
    raise AssertionError("unreachable")  # pragma: no cover - missing() raises


def secrets_of(creds: Path) -> tuple[str, str]:
    """The user JWT and the seed a ``.creds`` file holds (what must never be shown)."""
    lines = creds.read_text().splitlines()
    jwt = lines[lines.index("-----BEGIN NATS USER JWT-----") + 1]
    seed = lines[lines.index("-----BEGIN USER NKEY SEED-----") + 1]
    return jwt, seed


class Operator:
    """One operator with its system account and an application account ``APP`` whose
    users may use JetStream."""

    account = "APP"

    def __init__(
        self,
        binary: Path,
        home: Path,
        name: str = "OP",
        *,
        on_creds: Callable[[Path], None] = lambda _path: None,
    ) -> None:
        self.binary = binary
        self.on_creds = on_creds
        # nsc's store and what comes out of it live apart: nsc refuses a store with
        # files of its own kind that it did not make.
        self.home = home / "store"
        self.out = home / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.nsc("add", "operator", "--name", name, "--sys")
        self.nsc("add", "account", self.account)
        self.nsc(
            "edit", "account", self.account,
            "--js-mem-storage", "-1", "--js-disk-storage", "-1",
            "--js-streams", "-1", "--js-consumer", "-1",
        )  # fmt: skip

    def nsc(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.binary), "-H", str(self.home), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"nsc {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout + result.stderr

    def user(self, name: str, *, expiry: str | None = None) -> Path:
        """Add a user of ``APP`` and write its ``.creds`` file."""
        self.nsc("add", "user", "--account", self.account, name,
                 *(("--expiry", expiry) if expiry else ()))  # fmt: skip
        creds = self.out / f"{name}.creds"
        self.nsc("generate", "creds", "--account", self.account, "--name", name,
                 "--output-file", str(creds))  # fmt: skip
        creds.chmod(0o600)
        self.on_creds(creds)
        return creds

    def revoke(self, name: str) -> None:
        """Revoke the user in the account JWT (servers learn it by reload or push)."""
        self.nsc("revocations", "add-user", "--account", self.account, "--name", name)

    def memory_resolver(self) -> str:
        """Server config: this operator, its accounts preloaded in a memory resolver."""
        target = self.out / "memory-resolver.conf"
        self.nsc("generate", "config", "--mem-resolver", "--force",
                 "--config-file", str(target))  # fmt: skip
        return target.read_text()

    def nats_resolver(self, jwt_dir: Path) -> str:
        """Server config: this operator with a NATS (full) resolver storing account JWTs
        in ``jwt_dir``; accounts arrive with ``push()``."""
        target = self.out / "nats-resolver.conf"
        self.nsc("generate", "config", "--nats-resolver", "--force",
                 "--config-file", str(target))  # fmt: skip
        return target.read_text().replace("dir: './jwt'", f"dir: '{jwt_dir}'")

    def push(self, url: str) -> None:
        """Send the application account's JWT to the server's resolver (``nsc push``)."""
        self.nsc("push", "--account", self.account, "--account-jwt-server-url", url)


def user_nkey(binary: Path, path: Path) -> str:
    """Write a fresh user NKey seed to ``path``; return its public key."""
    # With a store of its own: nsc writes its config wherever it runs.
    store = path.parent / f".{path.name}-nsc"
    result = subprocess.run(
        [str(binary), "-H", str(store), "generate", "nkey", "--user"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    seed, public = (result.stdout + result.stderr).split()[:2]
    assert seed.startswith("SU") and public.startswith("U")
    path.write_text(seed + "\n")
    path.chmod(0o600)
    return public
