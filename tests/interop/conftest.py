"""A real Node peer (node-nats-streaming 0.3.2) for the interop tests.

``npm ci`` installs it from the committed lock file when ``node_modules`` is missing
(``tests/interop/install.sh`` does the same for ``.ci/run``). Without node the tests
skip, or fail under ``COMMON_EVENTS_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from common_events import __version__
from common_events.contracts.npm import npm_package, write_npm_package
from tests.fixtures.stan import StanServer
from tests.support.servers import missing

INTEROP_DIR = Path(__file__).parent
PEER = INTEROP_DIR / "peer.js"
READY_TIMEOUT = 20.0
NPM_PACKAGE = "@ticketing/common-events"


@pytest.fixture(scope="session")
def node_peer_installed() -> Path:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        missing("node and npm are needed for the interop tests (Node 18 or later)")
    modules = INTEROP_DIR / "node_modules"
    if not all((modules / name).is_dir() for name in ("node-nats-streaming", "ajv")):
        result = subprocess.run(
            ["bash", str(INTEROP_DIR / "install.sh")],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            missing(f"tests/interop/install.sh failed:\n{result.stdout}\n{result.stderr}")
    assert node is not None
    # The peer takes its subjects and its validation from the npm package generated from
    # today's models, as the Node services do (`common-events schema npm`).
    package = npm_package(NPM_PACKAGE, python_version=__version__)
    write_npm_package(modules / NPM_PACKAGE, package)
    return Path(node)


class NodePeer:
    """One ``node peer.js`` process and the JSON lines it reported."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.observers: list[Callable[[], None]] = []
        """Called on every line the peer reports."""
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            event = json.loads(line)
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
            for observer in self.observers:
                observer()
        async with self._changed:
            self.events.append({"event": "exit"})
            self._changed.notify_all()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.of_kind("message")

    async def wait_until(
        self, predicate: Callable[[NodePeer], bool], within: float = 15.0
    ) -> None:
        def done() -> bool:
            if self.of_kind("error"):
                raise AssertionError(f"the Node peer reported {self.of_kind('error')}")
            if predicate(self):
                return True
            if self.of_kind("exit"):
                raise AssertionError(f"the Node peer exited early: {self.events}")
            return False

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(done)

    async def wait_for_messages(self, count: int, within: float = 15.0) -> list[dict[str, Any]]:
        await self.wait_until(lambda peer: len(peer.messages) >= count, within)
        return self.messages

    async def stop(self) -> None:
        """SIGTERM (the peer closes its connection), SIGKILL if it lingers; reaps."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class NodePeers:
    """Starts Node peers against one server; the fixture stops them all."""

    def __init__(self, node: Path, server: StanServer, workdir: Path) -> None:
        self.node = node
        self.server = server
        self.workdir = workdir
        self.running: list[NodePeer] = []

    async def _start(self, *args: str) -> NodePeer:
        process = await asyncio.create_subprocess_exec(
            str(self.node),
            str(PEER),
            *args,
            cwd=INTEROP_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        peer = NodePeer(process)
        self.running.append(peer)
        return peer

    async def listen(self, client_id: str, queue_group: str, subjects: list[str]) -> NodePeer:
        """A Node listener, returned once all its subscriptions are ready."""
        peer = await self._start(
            "listen",
            self.server.nats_url,
            self.server.cluster_id,
            client_id,
            queue_group,
            ",".join(subjects),
        )
        await peer.wait_until(lambda p: bool(p.of_kind("ready")), READY_TIMEOUT)
        return peer

    async def publish(self, client_id: str, messages: list[dict[str, Any]]) -> NodePeer:
        """Publish from Node, one by one; returns once every PubAck came back."""
        file = self.workdir / f"{client_id}.json"
        file.write_text(json.dumps(messages))
        peer = await self._start(
            "publish", self.server.nats_url, self.server.cluster_id, client_id, str(file)
        )
        await peer.wait_until(lambda p: len(p.of_kind("published")) == len(messages))
        await asyncio.wait_for(peer.process.wait(), 10)
        assert peer.process.returncode == 0, peer.events
        return peer


@pytest.fixture
async def node_peers(
    node_peer_installed: Path, stan_server: StanServer, tmp_path: Path
) -> AsyncIterator[NodePeers]:
    peers = NodePeers(node_peer_installed, stan_server, tmp_path)
    yield peers
    for peer in peers.running:
        await peer.stop()
