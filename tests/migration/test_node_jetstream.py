"""A Node service on JetStream (the official ``nats`` client) next to Python ones: it
joins the stream and the Python listeners' consumers as an equal."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from common_events.core import Bus
from common_events.events import PaymentCreatedEvent, TicketCreatedEvent
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.jetstream import JetStreamTransport
from tests.interop.conftest import NodePeer
from tests.migration.conftest import NODE_DIR, run_cli, until
from tests.migration.events import payload
from tests.migration.test_migrate import collecting_listener

pytestmark = pytest.mark.timeout(120)

PEER = NODE_DIR / "peer.js"


class NodeService:
    def __init__(self, node: Path, server: EmbeddedNatsServer, workdir: Path) -> None:
        self.node = node
        self.server = server
        self.workdir = workdir
        self.peers: list[NodePeer] = []

    async def _start(self, *args: str) -> NodePeer:
        peer = await NodePeer.start(self.node, PEER, *args, cwd=NODE_DIR)
        self.peers.append(peer)
        return peer

    async def publish(self, name: str, messages: list[dict[str, Any]]) -> NodePeer:
        file = self.workdir / f"{name}.json"
        file.write_text(json.dumps(messages))
        peer = await self._start("publish", self.server.url, str(file))
        await peer.wait_until(lambda p: len(p.of_kind("published")) == len(messages), 30)
        await asyncio.wait_for(peer.process.wait(), 10)
        assert peer.process.returncode == 0, peer.events
        return peer

    async def listen(self, member: str, group: str, subjects: list[str]) -> NodePeer:
        described = await run_cli(
            "migrate",
            "--describe-consumers",
            group,
            *(arg for subject in subjects for arg in ("--subject", subject)),
        )
        assert described.status == 0, described.stderr
        file = self.workdir / f"{member}.consumers.json"
        file.write_text(described.stdout)
        peer = await self._start("listen", self.server.url, str(file), member)
        await peer.wait_until(lambda p: bool(p.of_kind("ready")), 20)
        return peer

    async def stop(self) -> None:
        for peer in self.peers:
            await peer.stop()


@pytest.fixture
async def node_service(
    jetstream_peer: Path, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> Any:
    service = NodeService(jetstream_peer, nats_server, tmp_path)
    yield service
    await service.stop()


def node_messages(subject: str, ids: list[str]) -> list[dict[str, Any]]:
    return [
        {"subject": subject, "data": json.loads(payload(subject, i)), "id": f"node-{i}"}
        for i in ids
    ]


async def test_every_event_crosses_both_ways(
    js: JetStreamTransport, node_service: NodeService
) -> None:
    # Node publishes, a Python listener receives.
    received: Counter[str] = Counter()
    listener = collecting_listener(TicketCreatedEvent, "orders-service", received)(Bus(js))
    await listener.listen()
    try:
        ids = [f"from-node-{n}" for n in range(200)]
        await node_service.publish("tickets", node_messages("ticket:created", ids))
        await until(lambda: len(received) == len(ids), 30)
    finally:
        await listener.close()
    assert set(received) == set(ids) and max(received.values()) == 1

    # Python publishes, a Node listener of another group receives, byte for byte.
    peer = await node_service.listen("payments-1", "payments-service", ["payment:created"])
    sent = {f"from-python-{n}": payload("payment:created", f"from-python-{n}") for n in range(200)}
    for data in sent.values():
        await js.publish("payment:created", data)
    await peer.wait_until(lambda p: len(p.messages) >= len(sent), 30)
    got = {m["data"]["id"]: m["raw"].encode() for m in peer.messages}
    assert got == sent
    assert PaymentCreatedEvent.subject.value == "payment:created"


async def test_a_mixed_node_and_python_queue_group_splits_the_work(
    js: JetStreamTransport, node_service: NodeService
) -> None:
    python_seen: Counter[str] = Counter()
    python_member = collecting_listener(TicketCreatedEvent, "orders-service", python_seen)(Bus(js))
    await python_member.listen()
    node_member = await node_service.listen("orders-node-1", "orders-service", ["ticket:created"])
    ids = [f"t{n}" for n in range(600)]
    try:
        half = len(ids) // 2
        # Half from Python, half from Node: both publishers on one stream.
        for event_id in ids[:half]:
            await js.publish("ticket:created", payload("ticket:created", event_id))
        await node_service.publish("orders", node_messages("ticket:created", ids[half:]))

        def node_ids() -> Counter[str]:
            return Counter(m["data"]["id"] for m in node_member.messages)

        await until(lambda: len(python_seen) + len(node_ids()) >= len(ids), 30)
        jsm = js.client.jsm()
        consumer = json.loads((node_service.workdir / "orders-node-1.consumers.json").read_text())[
            "consumers"
        ][0]["name"]

        async def drained() -> bool:
            info = await jsm.consumer_info(js.stream, consumer)
            return not info.num_pending and not info.num_ack_pending

        await until(drained, 30)
    finally:
        await python_member.close()
    from_node = node_ids()
    assert python_seen and from_node, "one member got nothing"
    assert set(python_seen) | set(from_node) == set(ids)
    assert not set(python_seen) & set(from_node), "a message went to both members"
    assert max(python_seen.values()) == 1 and max(from_node.values()) == 1
    print(f"split: Python {len(python_seen)}, Node {len(from_node)}")
