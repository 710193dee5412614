"""A 3-node cluster on loopback with an R3 stream survives losing a node mid-stream."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import nats
import pytest

from common_events import PublishAck, connect
from common_events.testing.servers import EmbeddedNatsCluster
from tests.jetstream.scenario import (
    ProcessedLog,
    RecordingTicketListener,
    TicketCreatedPublisher,
    ticket,
)

EVENTS = 2000
IN_FLIGHT = 64


async def stream_leader(url: str) -> str:
    nc = await nats.connect(url.split(","))
    try:
        info = await nc.jsm().stream_info("EVENTS")
    finally:
        await nc.close()
    assert info.cluster is not None and info.cluster.leader
    return str(info.cluster.leader)


async def stream_messages(url: str) -> int:
    nc = await nats.connect(url.split(","))
    try:
        info = await nc.jsm().stream_info("EVENTS")
    finally:
        await nc.close()
    return int(info.state.messages)


@pytest.mark.slow
async def test_no_event_is_lost_when_a_node_is_killed_midway(
    nats_cluster: EmbeddedNatsCluster,
) -> None:
    url = nats_cluster.url
    processed = ProcessedLog()
    options = {"replicas": 3, "publish_timeout": 30.0, "publish_attempt_timeout": 1.0}
    async with AsyncExitStack() as stack:
        publisher_bus = await connect(url, **options)
        stack.push_async_callback(publisher_bus.close)
        # Two instances of the orders service: one durable queue group across two
        # connections, so the group's consumer is shared and splits the work.
        for _ in range(2):
            bus = await connect(url, **options)
            stack.push_async_callback(bus.close)
            await RecordingTicketListener(bus, processed).listen()

        # The stream leader is the node whose loss hurts most; it goes halfway through.
        victim_name = await stream_leader(url)
        victim = next(node for node in nats_cluster.nodes if node.server_name == victim_name)
        publisher = TicketCreatedPublisher(publisher_bus)
        acks: list[PublishAck] = []
        window = asyncio.Semaphore(IN_FLIGHT)

        async def publish(n: int) -> None:
            async with window:
                acks.append(await publisher.publish(ticket(n)))

        async with asyncio.TaskGroup() as group:
            for n in range(EVENTS):
                if n == EVENTS // 2:
                    await processed.wait_until(lambda: len(processed.ids()) >= 200, 30)
                    victim.kill()
                group.create_task(publish(n))

        expected = {ticket(n).id for n in range(EVENTS)}
        await processed.wait_for_ids(expected, timeout=60)

    assert not victim.running
    # Every publish was confirmed, and each event is stored once: retries after the
    # kill carried the same Nats-Msg-Id and were de-duplicated by the stream.
    assert len(acks) == EVENTS
    assert len({ack.sequence for ack in acks}) == EVENTS
    assert await stream_messages(url) == EVENTS
    # Every event was processed; a second processing only as a visible redelivery.
    assert processed.ids() == expected
    assert processed.unexplained_duplicates() == []
