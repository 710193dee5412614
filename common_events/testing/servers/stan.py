"""Throwaway ``nats-streaming-server`` processes on free loopback ports.

The binary comes from ``go install github.com/nats-io/nats-streaming-server@v0.25.6``
(``scripts/install-stan-server.sh`` in this repository), found in ``$(go env GOPATH)/bin``
or on ``PATH``. ``restart()`` keeps the ports, the cluster id and the store, which is
how tests show what survives a server restart::

    with StanServer(file_store=True) as server:
        bus = await connect(server.url, cluster_id=server.cluster_id)
        ...
        server.restart()

The life cycle is synchronous (a start takes a fraction of a second): a test can stop,
kill or restart the server in the middle of its own event loop's work. ``async with``
waits for readiness without blocking the loop.

``StanCluster`` (``stan_cluster.py``) runs several as one clustered service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from abc import abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from common_events.testing.servers.process import (
    ServerNotFound,
    ServerProcess,
    ServerStartError,
    Throwaway,
)

__all__ = [
    "StanServer",
    "StanServerNotFound",
    "StanServerStartError",
    "find_stan_server",
    "go_bin_dir",
]

logger = logging.getLogger(__name__)

BINARY_NAME = "nats-streaming-server"
INSTALL_HINT = (
    "run scripts/install-stan-server.sh "
    "(go install github.com/nats-io/nats-streaming-server@v0.25.6)"
)
# The monitoring port opens before the streaming part subscribes to its request subjects,
# so an answer there alone is not enough; this line comes after them.
_READY_LINE = "Streaming Server is ready"
# A clustered node logs that line only when it becomes the leader; a follower is ready
# once its monitoring reports its role.
_CLUSTER_ROLES = frozenset({"Leader", "Follower"})
_STANDALONE = "Standalone"
"""``StanServer.role()`` of a server that runs on its own, not as a node of a cluster."""


class StanServerNotFound(ServerNotFound):
    """No ``nats-streaming-server`` in ``$(go env GOPATH)/bin`` or on ``PATH``."""


class StanServerStartError(ServerStartError):
    """``nats-streaming-server`` exited or did not become ready; holds its log tail."""


def go_bin_dir() -> Path | None:
    """Where ``go install`` puts binaries (``$GOPATH/bin``), or ``None`` without Go."""
    gopath = os.environ.get("GOPATH")
    if not gopath and shutil.which("go"):
        try:
            gopath = subprocess.run(
                ["go", "env", "GOPATH"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            gopath = None
    return Path(gopath) / "bin" if gopath else None


def find_stan_server() -> Path:
    """``nats-streaming-server`` from ``$(go env GOPATH)/bin``, else from ``PATH``."""
    bin_dir = go_bin_dir()
    if bin_dir is not None and (bin_dir / BINARY_NAME).is_file():
        return bin_dir / BINARY_NAME
    found = shutil.which(BINARY_NAME)
    if found:
        return Path(found)
    raise StanServerNotFound(
        f"{BINARY_NAME} not found in $(go env GOPATH)/bin or PATH; " + INSTALL_HINT
    )


class _StartedHere(Throwaway):
    """The life cycle of a server or a cluster started from the caller's thread, with
    its work directory.

    ``with`` starts it and waits for it there; ``async with`` starts it there too (see
    ``ServerProcess``: a server dies with the thread that spawned it) and waits in a
    worker thread, so the event loop keeps going. Either way it is stopped and cleaned
    up on exit, and when the start itself failed. The work directory is the one given,
    or a temporary one that ``cleanup()`` removes.
    """

    workdir: Path
    _own_workdir: bool

    def _use_workdir(self, workdir: str | os.PathLike[str] | None, prefix: str) -> None:
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=prefix))
        )

    def _remove_own_workdir(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @abstractmethod
    def start(self, *, wait: bool = True) -> None: ...

    @abstractmethod
    def wait_ready(self, timeout: float | None = None) -> None: ...

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    async def _enter(self) -> None:
        self.start(wait=False)
        await asyncio.to_thread(self.wait_ready)


class StanServer(ServerProcess, _StartedHere):
    """One nats-streaming-server process on 127.0.0.1.

    ``workdir`` holds the log and, with ``file_store``, the store (a temporary directory
    removed by ``cleanup()`` when not given). ``extra_args`` go to the server as they
    are (``("--user", "u", "--pass", "p")``, TLS options...).
    """

    def __init__(
        self,
        binary: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        *,
        cluster_id: str = "test-cluster",
        file_store: bool = False,
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
        monitor_port: int | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        super().__init__()
        self._binary = Path(binary) if binary is not None else None
        self._use_workdir(workdir, "common-events-stan-")
        self.cluster_id = cluster_id
        self.file_store = file_store
        self.extra_args = extra_args
        self._choose_ports(port, monitor_port)
        self.ready_timeout = ready_timeout

    @property
    def binary(self) -> Path:
        if self._binary is None:
            self._binary = find_stan_server()
        return self._binary

    @property
    def url(self) -> str:
        return f"stan://127.0.0.1:{self.port}"

    @property
    def nats_url(self) -> str:
        """The NATS port the streaming server runs on, as nats-py takes it."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def store_dir(self) -> Path:
        return self.workdir / "store"

    @property
    def clustered(self) -> bool:
        """Whether this node is one of a clustered service (``--clustered``)."""
        return "--clustered" in self.extra_args

    @property
    def node_id(self) -> str | None:
        """The node id given with ``--cluster_node_id``, if any."""
        args = self.extra_args
        for index, arg in enumerate(args[:-1]):
            if arg == "--cluster_node_id":
                return args[index + 1]
        return None

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def command(self) -> list[str]:
        args = [
            str(self.binary),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-cid", self.cluster_id,
        ]  # fmt: skip
        if self.file_store:
            args += ["--store", "file", "--dir", str(self.store_dir)]
        else:
            args += ["--store", "memory"]
        return [*args, *self.extra_args]

    async def _exit(self) -> None:
        await self._stop(5.0)

    def start(self, *, wait: bool = True) -> None:
        """Start the process; with ``wait``, return once it is ready for clients."""
        if self.running:
            raise StanServerStartError(f"{BINARY_NAME} on port {self.port} is already running")
        binary = self.binary
        if not binary.is_file():
            raise StanServerNotFound(f"{BINARY_NAME} binary {binary} does not exist")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(self.PORT_ATTEMPTS):
            self._spawn(self.command(), self.log_path)
            if not wait:
                return
            try:
                self.wait_ready()
            except StanServerStartError as error:
                if not self._repicked_ports(error, attempt):
                    raise
                continue
            self._ports_in_use()
            return

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll until the server logs that it is ready and its monitoring answers."""
        limit = timeout if timeout is not None else self.ready_timeout
        deadline = time.monotonic() + limit
        while True:
            process = self.process
            if process is None or process.poll() is not None:
                code = process.returncode if process is not None else None
                raise StanServerStartError(
                    f"{BINARY_NAME} exited with {code}:\n{self.log()[-4000:]}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise StanServerStartError(
                    f"{BINARY_NAME} not ready after {limit}s:\n{log[-4000:]}"
                )
            time.sleep(0.02)

    def _ready(self) -> bool:
        if self.clustered:
            return self.role() in _CLUSTER_ROLES
        return _READY_LINE in self.log() and self._monitor_answers()

    def role(self) -> str | None:
        """What this server is in its service, as its monitoring says now.

        ``Leader``, ``Follower`` or ``Candidate`` for a node of a clustered service
        (``--clustered``, ``StanCluster``); ``Standalone`` for a server that runs on its
        own; ``None`` while it has no answer: the monitoring does not answer yet, or the
        server is in none of those states (starting, a fault-tolerance standby, shutting
        down). A clustered node counts as ready once it reports ``Leader`` or
        ``Follower``.
        """
        try:
            serverz = self.monitor("/streaming/serverz")
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return None
        # "role" is only in a clustered node's answer; a server on its own says so in
        # "state" (STANDALONE, CLUSTERED, FT_ACTIVE, FT_STANDBY, FAILED, SHUTDOWN).
        role = serverz.get("role")
        if role:
            return str(role)
        return _STANDALONE if serverz.get("state") == "STANDALONE" else None

    def _monitor_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/streaming/serverz", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def monitor(self, path: str) -> Any:
        """GET a monitoring endpoint (``/streaming/clientsz`` ...) as JSON."""
        with urllib.request.urlopen(f"{self.monitor_url}{path}", timeout=5) as response:
            return json.loads(response.read())

    def client_ids(self) -> set[str]:
        """The client ids the server has registered right now."""
        clients = self.monitor("/streaming/clientsz").get("clients") or []
        return {client["id"] for client in clients}

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; always reaps. The store stays."""
        self.stop_now(5.0)

    def restart(self) -> None:
        """Stop and start again on the same ports, cluster id and store."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop what still runs and remove the work directory if it was made here."""
        self.stop()
        self._remove_own_workdir()
