"""A throwaway PostgreSQL server from Debian's ``postgresql`` package, for tests.

``initdb`` makes a cluster in a temporary directory and ``postgres`` serves it on a free
loopback port, with fsync off (the tests kill relays, never the database). PostgreSQL
refuses to run as root: as root, the directory is given to an unprivileged user
(``postgres`` where the package made it, else ``nobody``) and both programs run as that
user. The server is this process's child and dies with it (``setpriv --pdeathsig``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server programs on this machine."""


def find_postgres_bin() -> Path:
    """The directory of ``initdb`` and ``postgres``: the newest Debian version, else
    ``pg_config --bindir``, else ``PATH``."""
    found = sorted(
        (Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda path: _version(path.parent.name),
    )
    if found:
        return found[-1]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
            if (Path(bindir) / "initdb").is_file():
                return Path(bindir)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresNotFound(
        "PostgreSQL's initdb was not found: run scripts/install-postgres.sh "
        "(apt-get install postgresql)"
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs the server: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresNotFound("running as root, and neither user 'postgres' nor 'nobody' exists")


def _as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """``Popen`` arguments that run the child as ``user`` (no ``preexec_fn``: it is not
    safe with the threads a test run has)."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _dying_with_us(command: list[str]) -> list[str]:
    """``command`` under ``setpriv --pdeathsig KILL`` where it exists, so the server
    dies with the test run even when that is killed before its clean-up."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or sys.platform != "linux":
        return command
    return [setpriv, "--pdeathsig", "KILL", "--", *command]


class PostgresServer:
    """One PostgreSQL cluster; ``start()``, ``url(database)``, ``stop()``."""

    superuser = "test"

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir if bin_dir is not None else find_postgres_bin()
        self.port = _free_port()
        self.user = _unprivileged_user()
        self.directory = Path(tempfile.mkdtemp(prefix="common-events-pg-"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._databases = 0

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        if self.user is not None:
            env.update(HOME=str(self.directory), USER=self.user.pw_name)
        return env

    def start(self, timeout: float = 60.0) -> None:
        if self.user is not None:
            os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
        initdb = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.superuser,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            env=self._env(),
            cwd=self.directory,
            timeout=timeout,
            **_as_user(self.user),
            check=False,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed ({initdb.returncode}):\n{initdb.stderr}")
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        try:
            self._process = subprocess.Popen(
                _dying_with_us(
                    [
                        str(self.bin_dir / "postgres"),
                        "-D",
                        str(self.data),
                        "-p",
                        str(self.port),
                        "-h",
                        "127.0.0.1",
                        "-k",
                        str(self.directory),
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=200",
                    ]
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.directory,
                start_new_session=True,
                **_as_user(self.user),
            )
        finally:
            log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        result = subprocess.run(
            [
                str(self.bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                name,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {result.stderr}")
        return name

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGINT: PostgreSQL's "fast" shutdown (rolls back, disconnects clients).
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
