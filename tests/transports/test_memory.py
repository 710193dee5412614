"""What the in-memory broker does beyond the shared conformance suite."""

from __future__ import annotations

import asyncio
import logging

import pytest

from common_events import TransportClosed
from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.memory import MemoryBroker, MemoryTransport, connect
from tests.support.collect import Collector

SUBJECT = "ticket:created"


async def test_nak_with_delay_redelivers_after_the_delay_not_before() -> None:
    transport = MemoryTransport()
    collector = Collector(ack=False)
    await transport.subscribe(SUBJECT, collector, SubscriptionOptions(ack_wait=30.0))
    await transport.publish(SUBJECT, b"{}")
    (first,) = await collector.wait_for_count(1)
    loop = asyncio.get_running_loop()
    naked_at = loop.time()
    await first.nak(0.3)
    second = (await collector.wait_for_count(2))[1]
    assert loop.time() - naked_at >= 0.29
    assert (second.delivery_count, second.redelivered) == (2, True)
    await second.ack()
    await transport.close()


async def test_a_leaving_member_hands_its_unacked_messages_to_the_group() -> None:
    broker = MemoryBroker()
    leaving, staying = MemoryTransport(broker), MemoryTransport(broker)
    options = SubscriptionOptions(queue_group="g", durable_name="g", ack_wait=60.0)
    held = Collector(ack=False)
    subscription = await leaving.subscribe(SUBJECT, held, options)
    await leaving.publish(SUBJECT, b"1")
    await held.wait_for_count(1)

    other = Collector()
    await staying.subscribe(SUBJECT, other, options)
    await subscription.close()
    (message,) = await other.wait_for_count(1)
    assert message.data == b"1"
    assert message.delivery_count == 2  # long before the 60 s ack wait
    await staying.close()


async def test_a_late_ack_of_an_older_delivery_still_counts() -> None:
    transport = MemoryTransport()
    collector = Collector(ack=False)
    await transport.subscribe(SUBJECT, collector, SubscriptionOptions(ack_wait=0.2))
    await transport.publish(SUBJECT, b"{}")
    first, _second = await collector.wait_for_count(2)
    await first.ack()  # processed after all; the broker forgets the message
    await transport.publish(SUBJECT, b"marker")
    messages = await collector.wait_until(lambda ms: ms[-1].data == b"marker")
    await asyncio.sleep(0.5)
    assert [m.data for m in messages].count(b"{}") == 2
    await transport.close()


async def test_a_non_durable_subscription_is_forgotten_on_close() -> None:
    broker = MemoryBroker()
    transport = MemoryTransport(broker)
    subscription = await transport.subscribe(SUBJECT, Collector(), SubscriptionOptions())
    await subscription.close()
    assert not broker._states
    await transport.close()


async def test_a_handler_error_inside_the_transport_does_not_stop_the_subscription(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = MemoryTransport()
    seen: list[TransportMessage] = []
    acked: set[bytes] = set()
    done = asyncio.Event()

    async def explode_once(message: TransportMessage) -> None:
        seen.append(message)
        if len(seen) == 1:
            raise RuntimeError("boom")
        await message.ack()
        acked.add(message.data)
        if acked == {b"1", b"2"}:
            done.set()

    await transport.subscribe(SUBJECT, explode_once, SubscriptionOptions(ack_wait=0.2))
    with caplog.at_level(logging.ERROR, logger="common_events.transports.memory"):
        await transport.publish(SUBJECT, b"1")
        await transport.publish(SUBJECT, b"2")
        async with asyncio.timeout(5):
            await done.wait()
    await transport.close()
    # One guard, which only logs: the message was neither acked nor nak'ed there, and
    # came back after ack_wait like any unacknowledged message.
    (logged,) = caplog.records
    assert logged.getMessage().startswith(f"handler for {SUBJECT} raised")
    assert [m.delivery_count for m in seen if m.data == b"1"] == [1, 2]


async def test_closing_a_subscription_does_not_wait_for_a_running_handler() -> None:
    # The core drains before it closes; the transport must not wait a second time,
    # not even for a handler that ignores its cancellation.
    broker = MemoryBroker()
    leaving, staying = MemoryTransport(broker), MemoryTransport(broker)
    options = SubscriptionOptions(queue_group="g", durable_name="g", ack_wait=60.0)
    started, release = asyncio.Event(), asyncio.Event()

    async def stubborn(message: TransportMessage) -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop

    subscription = await leaving.subscribe(SUBJECT, stubborn, options)
    await leaving.publish(SUBJECT, b"1")
    async with asyncio.timeout(5):
        await started.wait()
    other = Collector()
    await staying.subscribe(SUBJECT, other, options)

    async with asyncio.timeout(1):
        await subscription.close()
    # The abandoned handler's message went back to the group, unacknowledged.
    (message,) = await other.wait_for_count(1)
    assert (message.data, message.delivery_count) == (b"1", 2)
    release.set()
    await staying.close()
    await leaving.close()


async def test_connect_accepts_the_stream_subjects_and_stores_any_subject() -> None:
    transport = await connect("memory://", subjects=("ticket:created",))
    await transport.publish("order:created", b"{}")
    assert transport.broker.subjects() == ["order:created"]
    await transport.close()


async def test_a_closed_transport_refuses_work() -> None:
    transport = MemoryTransport()
    await transport.close()
    with pytest.raises(TransportClosed):
        await transport.publish(SUBJECT, b"{}")
    with pytest.raises(TransportClosed):
        await transport.subscribe(SUBJECT, Collector(), SubscriptionOptions())
