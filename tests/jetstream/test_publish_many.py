"""``publish_many`` on JetStream: a window of first attempts outstanding at once, and the
ones whose reply did not come sent again under the same ``Nats-Msg-Id``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pytest

from common_events.errors import PublishError, TransportClosed
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.base import PublishAck
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.jetstream import publishing as publishing_module

Connect = Callable[..., Awaitable[JetStreamTransport]]
SUBJECT = "ticket:created"


async def stored(url: str) -> list[tuple[int, bytes, str]]:
    """(sequence, payload, message id) of every message of the stream, in order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("EVENTS")
        messages = []
        for sequence in range(1, int(info.state.last_seq) + 1):
            msg = await js.get_msg("EVENTS", sequence)
            messages.append((sequence, bytes(msg.data or b""), (msg.headers or {})["Nats-Msg-Id"]))
        return messages
    finally:
        await nc.close()


async def test_a_batch_larger_than_the_window_is_stored_once_each_in_order(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url, max_pending_publishes=16)
    payloads = [f'{{"n":{n}}}'.encode() for n in range(500)]
    results = await transport.publish_many(SUBJECT, payloads)
    assert all(isinstance(result, PublishAck) for result in results)
    assert [result.sequence for result in results if isinstance(result, PublishAck)] == list(
        range(1, 501)
    )
    messages = await stored(nats_server.url)
    assert [data for _, data, _ in messages] == payloads
    assert len({message_id for _, _, message_id in messages}) == 500


async def test_publishes_whose_reply_is_lost_are_sent_again_and_stored_once(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every third reply never reaches its publish (as when a reply is lost in a
    # reconnect): the message was stored, the publish times out and is sent again
    # under its id, and the stream keeps one copy.
    transport = await jetstream_connect(
        nats_server.url, max_pending_publishes=32, publish_attempt_timeout=0.3
    )
    deliver = publishing_module._Replies._on_reply
    seen = 0

    async def lossy(self: Any, msg: Any) -> None:
        nonlocal seen
        seen += 1
        if seen % 3 or seen > 300:
            await deliver(self, msg)

    monkeypatch.setattr(publishing_module._Replies, "_on_reply", lossy)
    payloads = [f'{{"n":{n}}}'.encode() for n in range(300)]
    results = await transport.publish_many(SUBJECT, payloads)
    acks = [result for result in results if isinstance(result, PublishAck)]
    assert len(acks) == 300
    # The stored sequence of each, once, though a third were sent twice.
    assert sorted(ack.sequence or 0 for ack in acks) == list(range(1, 301))
    assert not any(ack.duplicate for ack in acks)
    assert [data for _, data, _ in await stored(nats_server.url)] == payloads


async def test_a_subject_no_stream_stores_fails_each_publish_of_the_batch(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url, publish_attempt_timeout=0.5)
    results = await transport.publish_many("nobody:listens", [b"{}", b"{}"])
    assert len(results) == 2
    for result in results:
        assert isinstance(result, PublishError)
        assert "no JetStream stream stores 'nobody:listens'" in str(result)


async def test_closing_fails_the_publishes_still_waiting(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = await jetstream_connect(nats_server.url)

    async def silent(self: Any, msg: Any) -> None:
        return None

    monkeypatch.setattr(publishing_module._Replies, "_on_reply", silent)
    batch = asyncio.ensure_future(transport.publish_many(SUBJECT, [b"{}"] * 10))
    single = asyncio.ensure_future(transport.publish(SUBJECT, b"{}"))
    await asyncio.sleep(0.2)
    await transport.close()
    results = await asyncio.wait_for(batch, 5)
    assert len(results) == 10
    assert all(isinstance(result, TransportClosed) for result in results)
    with pytest.raises(TransportClosed):
        await asyncio.wait_for(single, 5)
