"""``common-events bridge`` against real servers and a Node service on NATS Streaming."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from common_events.core import Bus
from common_events.events import OrderCreatedEvent, TicketCreatedEvent
from common_events.migration.jetstream_stream import EventStream
from common_events.testing.servers import EmbeddedNatsServer, StanServer
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.stan import StanTransport
from tests.interop.conftest import INTEROP_DIR, PEER, NodePeer
from tests.migration.conftest import CliProcess, until
from tests.migration.events import payload
from tests.migration.test_migrate import collecting_listener

pytestmark = pytest.mark.timeout(180)


def bridge_args(stan: StanServer, nats_server: EmbeddedNatsServer, *more: str) -> list[str]:
    return [
        "bridge",
        "--from", stan.url,
        "--cluster-id", stan.cluster_id,
        "--to", nats_server.url,
        "--stan-monitor", stan.monitor_url,
        "--ack-wait", "2",
        *more,
    ]  # fmt: skip


async def node_publisher(
    node: Path, stan: StanServer, client_id: str, messages: list[dict[str, Any]], workdir: Path
) -> NodePeer:
    """A Node service publishing on STAN with node-nats-streaming, in the background."""
    file = workdir / f"{client_id}.json"
    file.write_text(json.dumps(messages))
    return await NodePeer.start(
        node, PEER, "publish", stan.nats_url, stan.cluster_id, client_id, str(file), cwd=INTEROP_DIR
    )


def node_events(tag: str, count: int) -> list[dict[str, Any]]:
    """Node-style messages: JSON.stringify of the event's data, two subjects in turn."""
    messages = []
    for n in range(count):
        subject = "ticket:created" if n % 3 else "order:created"
        data = json.loads(payload(subject, f"{tag}-{n}"))
        messages.append({"subject": subject, "data": data})
    return messages


async def origins(stream: EventStream, subject: str) -> list[int | None]:
    return [message.origin async for message in stream.scan(subject)]


async def test_bridge_killed_and_restarted_then_stan_restarted_nothing_lost_or_doubled(
    stan: StanServer,
    nats_server: EmbeddedNatsServer,
    js: JetStreamTransport,
    stream: EventStream,
    cli_processes: Any,
    node_peer_installed: Path,
    tmp_path: Path,
) -> None:
    received: Counter[str] = Counter()
    bus = Bus(js)
    listeners = [
        collecting_listener(TicketCreatedEvent, "orders-service", received)(bus),
        collecting_listener(OrderCreatedEvent, "orders-service", received)(bus),
    ]
    for listener in listeners:
        await listener.listen()
    args = bridge_args(
        stan, nats_server, "--to-jetstream", "ticket:created", "--to-jetstream", "order:created"
    )
    bridge: CliProcess = await cli_processes(*args)
    await bridge.wait_for_line("bridge running")
    try:
        first = node_events("first", 1500)
        # A misbehaving service: not JSON, and JSON that is no valid event.
        first[700:700] = [
            {"subject": "ticket:created", "raw": "not json {"},
            {"subject": "ticket:created", "raw": '{"id":"bad","price":"free"}'},
        ]
        publisher = await node_publisher(node_peer_installed, stan, "tickets-1", first, tmp_path)
        await until(lambda: len(received) >= 200, 30)
        bridge.kill()
        await bridge.wait()
        killed_at = len(received)
        bridge = await cli_processes(*args)
        await bridge.wait_for_line("bridge running")
        await asyncio.wait_for(publisher.process.wait(), 60)
        assert publisher.process.returncode == 0, publisher.events

        stan.restart()  # the bridge's session and durables survive in the file store
        second = node_events("second", 300)
        publisher = await node_publisher(node_peer_installed, stan, "tickets-2", second, tmp_path)
        await asyncio.wait_for(publisher.process.wait(), 60)
        assert publisher.process.returncode == 0, publisher.events

        wanted = {m["data"].get("id") for m in first + second if "data" in m}
        await until(lambda: set(received) >= wanted, 60)
        await until(dead_lettered(stream, 2), 30)
    finally:
        for listener in listeners:
            await listener.close()
    assert killed_at < len(wanted)
    assert set(received) == wanted
    assert max(received.values()) == 1, [k for k, v in received.items() if v > 1]
    # The stream holds each STAN message once, in STAN order.
    tickets = sum(1 for m in first + second if m["subject"] == "ticket:created")
    orders = len(first) + len(second) - tickets
    assert await origins(stream, "ticket:created") == list(range(1, tickets + 1))
    assert await origins(stream, "order:created") == list(range(1, orders + 1))

    bridge.terminate()
    assert await bridge.wait() == 0, bridge.output
    assert "bridge stopped" in bridge.output


def dead_lettered(stream: EventStream, count: int) -> Any:
    async def check() -> bool:
        return await stream.subject_count("dead-letter:ticket:created") >= count

    return check


async def test_reverse_direction_reaches_a_node_listener_on_stan_once(
    stan: StanServer,
    nats_server: EmbeddedNatsServer,
    js: JetStreamTransport,
    cli_processes: Any,
    node_peer_installed: Path,
) -> None:
    listener = await NodePeerListener.start(node_peer_installed, stan, "tickets-service")
    args = bridge_args(stan, nats_server, "--to-stan", "order:created")
    bridge: CliProcess = await cli_processes(*args)
    await bridge.wait_for_line("bridge running")
    try:
        ids = [f"order-{n}" for n in range(400)]

        async def publish(batch: list[str]) -> None:
            for event_id in batch:
                await js.publish("order:created", payload("order:created", event_id))

        await publish(ids[:200])
        await listener.peer.wait_until(lambda p: len(p.messages) >= 50, 30)
        bridge.kill()
        await bridge.wait()
        await publish(ids[200:300])
        bridge = await cli_processes(*args)
        await bridge.wait_for_line("bridge running")
        stan.restart()
        await publish(ids[300:])
        await listener.peer.wait_until(
            lambda p: {m["data"]["id"] for m in p.messages} >= set(ids), 60
        )
    finally:
        await listener.peer.stop()
    channel = stan.monitor("/streaming/channelsz?channel=order:created")
    assert channel["msgs"] == len(ids), "a message was stored twice on STAN"
    # Each event is one STAN message (the listener may see it again after the restart).
    stored: dict[str, set[int]] = {}
    for message in listener.peer.messages:
        stored.setdefault(message["data"]["id"], set()).add(message["sequence"])
    assert set(stored) == set(ids)
    assert all(len(sequences) == 1 for sequences in stored.values())
    bridge.terminate()
    assert await bridge.wait() == 0, bridge.output


class NodePeerListener:
    def __init__(self, peer: NodePeer) -> None:
        self.peer = peer

    @classmethod
    async def start(cls, node: Path, stan: StanServer, group: str) -> NodePeerListener:
        peer = await NodePeer.start(
            node, PEER, "listen", stan.nats_url, stan.cluster_id, f"{group}-1", group,
            "order:created", cwd=INTEROP_DIR,
        )  # fmt: skip
        await peer.wait_until(lambda p: bool(p.of_kind("ready")), 20)
        return cls(peer)


async def test_a_subject_is_never_bridged_both_ways(
    stan: StanServer, nats_server: EmbeddedNatsServer, stan_client: StanTransport
) -> None:
    from tests.migration.conftest import run_cli

    result = await run_cli(
        *bridge_args(stan, nats_server, "--to-jetstream", "order:created", "--to-stan",
                     "order:created")
    )  # fmt: skip
    assert result.status == 1
    assert "bridged both ways" in result.stderr


async def test_the_bridge_answers_health_probes_like_a_service(
    stan: StanServer, nats_server: EmbeddedNatsServer, cli_processes: Any
) -> None:
    import urllib.request

    from common_events.testing.servers import free_loopback_port

    port = free_loopback_port()
    bridge: CliProcess = await cli_processes(
        *bridge_args(stan, nats_server, "--health-port", str(port))
    )
    await bridge.wait_for_line("bridge running")

    def status(path: str) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)

    assert await asyncio.to_thread(status, "/livez") == 200
    assert await asyncio.to_thread(status, "/readyz") == 200
    bridge.terminate()
    assert await bridge.wait() == 0, bridge.output
