"""``write_publish``: a PUB written to nats-py's outbound buffer, or left to ``publish``;
``publish_eagerly``: nats-py's publish run in line, and carried on by a task where
nats-py has to wait; against a real nats-server."""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import pytest

from common_events.embedded import EmbeddedNatsServer
from common_events.transports.nats_connection import publish_eagerly, write_publish


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


# -- write_publish: the PUB written to nats-py's outbound buffer ----------------------


async def test_a_written_publish_arrives_and_is_counted(nats_server: EmbeddedNatsServer) -> None:
    client = await nats.connect(nats_server.url)
    try:
        subscription = await client.subscribe("eager.test")
        await client.flush()
        sent_before = client.stats["out_msgs"]
        assert write_publish(client, "eager.test", b"written", "reply.to")
        assert write_publish(client, "eager.test", b"and again")
        first = await subscription.next_msg(timeout=5)
        second = await subscription.next_msg(timeout=5)
        assert (first.data, first.reply) == (b"written", "reply.to")
        assert (second.data, second.reply) == (b"and again", "")
        assert client.stats["out_msgs"] == sent_before + 2
    finally:
        await client.close()


@pytest.mark.parametrize("subject", ["", "two words", "line\r\nPUB injected 0"])
async def test_a_subject_nats_py_would_refuse_is_left_to_publish(
    nats_server: EmbeddedNatsServer, subject: str
) -> None:
    client = await nats.connect(nats_server.url)
    try:
        pending = client._pending_data_size
        assert not write_publish(client, subject, b"never written")
        assert not write_publish(client, "eager.test", b"never written", reply=subject or " ")
        assert client._pending_data_size == pending
        with pytest.raises(nats.errors.BadSubjectError):
            publish_eagerly(client, subject, b"never written", "")
    finally:
        await client.close()


async def test_a_closed_client_or_a_full_buffer_is_left_to_publish(
    nats_server: EmbeddedNatsServer,
) -> None:
    client = await nats.connect(nats_server.url, pending_size=1)
    try:
        # Over the outbound buffer's limit: publish flushes first, and waits for it.
        assert not write_publish(client, "eager.test", b"too much")
    finally:
        await client.close()
    assert not write_publish(client, "eager.test", b"closed")
