"""``publish_many`` on NATS Streaming with a window smaller than the batch: it waits for
room in half windows, sends every payload once, in order, and reports each outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from common_events.transports.base import PublishAck, SubscriptionOptions, TransportMessage
from common_events.transports.stan import StanTransport, connect
from tests.fixtures.stan import StanServer

SUBJECT = "ticket:created"


@pytest.fixture
async def transport(stan_server: StanServer) -> AsyncIterator[StanTransport]:
    made = await connect(stan_server.url, max_pub_acks_inflight=8)
    yield made
    await made.close()


async def test_a_batch_larger_than_the_window_is_stored_once_each_in_order(
    stan_server: StanServer, transport: StanTransport
) -> None:
    payloads = [b"%d" % n for n in range(500)]
    results = await transport.publish_many(SUBJECT, payloads)
    assert all(isinstance(result, PublishAck) for result in results)
    assert len({result.guid for result in results if isinstance(result, PublishAck)}) == 500
    assert transport.client.pub_acks_inflight == 0

    received: list[bytes] = []
    done = asyncio.Event()

    async def collect(message: TransportMessage) -> None:
        received.append(message.data)
        await message.ack()
        if len(received) == len(payloads):
            done.set()

    await transport.subscribe(SUBJECT, collect, SubscriptionOptions(max_in_flight=64))
    await asyncio.wait_for(done.wait(), 10)
    assert received == payloads


async def test_a_batch_and_single_publishes_sharing_the_window_all_complete(
    transport: StanTransport,
) -> None:
    # Single publishes queue for one slot each while the batch waits for half the
    # window: neither starves the other.
    results, single = await asyncio.gather(
        transport.publish_many(SUBJECT, [b"batch"] * 100),
        asyncio.gather(*(transport.publish(SUBJECT, b"single") for _ in range(20))),
    )
    assert all(isinstance(result, PublishAck) for result in results)
    assert len(single) == 20
    assert transport.client.pub_acks_inflight == 0
