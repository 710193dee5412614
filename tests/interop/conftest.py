"""A real Node peer (node-nats-streaming 0.3.2) for the interop tests.

``npm ci`` installs it from the committed lock file when ``node_modules`` is missing
(``tests/interop/install.sh`` does the same for ``.ci/run``). Without node the tests
skip, or fail under ``COMMON_EVENTS_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from common_events import __version__
from common_events.contracts.npm import npm_package, write_npm_package
from tests.fixtures.stan import StanServer
from tests.support.node_process import JsonLineProcess, node_installed

INTEROP_DIR = Path(__file__).parent
PEER = INTEROP_DIR / "peer.js"
READY_TIMEOUT = 20.0
NPM_PACKAGE = "@ticketing/common-events"


@pytest.fixture(scope="session")
def node_peer_installed() -> Path:
    modules = INTEROP_DIR / "node_modules"
    install = INTEROP_DIR / "install.sh"
    node = node_installed("the interop tests", install, modules, "node-nats-streaming", "ajv")
    # The peer takes its subjects and its validation from the npm package generated from
    # today's models, as the Node services do (`common-events schema npm`).
    package = npm_package(NPM_PACKAGE, python_version=__version__)
    write_npm_package(modules / NPM_PACKAGE, package)
    return node


class NodePeer(JsonLineProcess):
    """One ``node peer.js`` process and the JSON lines it reported."""

    name = "the Node peer"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.of_kind("message")

    async def wait_for_messages(self, count: int, within: float = 15.0) -> list[dict[str, Any]]:
        await self.wait_until(lambda peer: len(peer.messages) >= count, within)
        return self.messages


class NodePeers:
    """Starts Node peers against one server; the fixture stops them all."""

    def __init__(self, node: Path, server: StanServer, workdir: Path) -> None:
        self.node = node
        self.server = server
        self.workdir = workdir
        self.running: list[NodePeer] = []

    async def _start(self, *args: str) -> NodePeer:
        peer = await NodePeer.start(self.node, PEER, *args, cwd=INTEROP_DIR)
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
