"""``publish_eagerly``: nats-py's publish run in line, and carried on by a task where
nats-py has to wait, against a real nats-server."""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import pytest

from common_events.embedded import EmbeddedNatsServer
from common_events.transports.nats_connection import publish_eagerly


async def test_a_publish_is_taken_in_line(nats_server: EmbeddedNatsServer) -> None:
    client = await nats.connect(nats_server.url)
    try:
        subscription = await client.subscribe("eager.test")
        await client.flush()
        assert publish_eagerly(client, "eager.test", b"one", "reply.to") is None
        message = await subscription.next_msg(timeout=5)
        assert (message.data, message.reply) == (b"one", "reply.to")
    finally:
        await client.close()


async def test_where_nats_py_has_to_wait_a_task_finishes_the_publish(
    nats_server: EmbeddedNatsServer,
) -> None:
    # An outbound buffer of one byte: every publish waits for the flusher to write it.
    client = await nats.connect(nats_server.url, pending_size=1)
    try:
        subscription = await client.subscribe("eager.test")
        await client.flush()
        rest = publish_eagerly(client, "eager.test", b"two", "")
        assert rest is not None
        await asyncio.wait_for(rest, 5)
        message = await subscription.next_msg(timeout=5)
        assert message.data == b"two"
    finally:
        await client.close()


async def test_what_nats_py_refuses_at_once_is_raised(nats_server: EmbeddedNatsServer) -> None:
    client = await nats.connect(nats_server.url)
    await client.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        publish_eagerly(client, "eager.test", b"three", "")
