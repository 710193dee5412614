"""The in-memory broker's limits: a maximum payload like nats-server's, and retention like
a JetStream stream's limits (the oldest messages dropped past a count or a size, whether
or not every subscription had them)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from common_events import ConfigurationError, PublishError, connect
from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.memory import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_MAX_PAYLOAD,
    MemoryBroker,
    MemoryTransport,
)


def test_the_defaults_hold_a_test_suite_and_refuse_what_nats_server_refuses() -> None:
    broker = MemoryBroker()

    assert (broker.max_messages, broker.max_bytes, broker.max_payload) == (
        DEFAULT_MAX_MESSAGES,
        DEFAULT_MAX_BYTES,
        DEFAULT_MAX_PAYLOAD,
    )
    assert (DEFAULT_MAX_MESSAGES, DEFAULT_MAX_BYTES, DEFAULT_MAX_PAYLOAD) == (
        1_000_000,
        1024**3,
        1024**2,
    )


async def test_a_message_over_the_maximum_payload_is_refused_headers_included() -> None:
    transport = MemoryTransport(MemoryBroker(max_payload=1000))

    assert transport.max_payload == 1000 and transport.carries_headers
    await transport.publish("a", b"x" * 1000)
    with pytest.raises(PublishError, match=r"maximum payload \(1001 > 1000 bytes\)"):
        await transport.publish("a", b"x" * 1001)
    # NATS counts headers too: "NATS/1.0\r\n" + "k: v\r\n" + "\r\n" is 18 bytes.
    await transport.publish("a", b"x" * 982, {"k": "v"})
    with pytest.raises(PublishError):
        await transport.publish("a", b"x" * 983, {"k": "v"})
    assert [len(m.data) for m in transport.broker.messages("a")] == [1000, 982]


def test_past_max_messages_the_oldest_of_all_subjects_go_and_sequences_go_on() -> None:
    broker = MemoryBroker(max_messages=1000)

    for number in range(10_000):
        broker.publish("a" if number % 2 else "b", str(number).encode(), None)

    assert broker.stored_messages == 1000
    assert broker.dropped == 9000
    kept = [int(m.data) for subject in ("a", "b") for m in broker.messages(subject)]
    assert sorted(kept) == list(range(9000, 10_000))
    assert [m.sequence for m in broker.messages("a")] == list(range(4501, 5001))


def test_past_max_bytes_the_oldest_go() -> None:
    broker = MemoryBroker(max_bytes=100_000, max_payload=10_000)

    for number in range(1000):
        broker.publish("a", number.to_bytes(4, "big") * 250, None)  # 1000 bytes each

    assert broker.stored_bytes == 100_000
    assert [m.sequence for m in broker.messages("a")] == list(range(901, 1001))


def test_memory_stays_bounded_past_the_limit() -> None:
    broker = MemoryBroker(max_messages=1000)
    payload = b"x" * 1000

    def traced_after(count: int) -> int:
        for _ in range(count):
            broker.publish("a", bytes(payload), None)
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        at_the_limit = traced_after(1000)
        past_it = traced_after(20_000)  # 20 MB published, unbounded
    finally:
        tracemalloc.stop()

    assert broker.stored_messages == 1000
    assert past_it - at_the_limit < 1_000_000, "20 MB more published, under 1 MB more kept"


async def test_a_subscription_behind_skips_what_was_dropped_and_gets_the_rest() -> None:
    broker = MemoryBroker(max_messages=3)
    transport = MemoryTransport(broker)
    for number in range(1, 6):
        await transport.publish("a", str(number).encode())
    seen: list[int] = []
    done = asyncio.Event()

    async def handler(message: TransportMessage) -> None:
        seen.append(message.sequence)
        await message.ack()
        if message.sequence == 5:
            done.set()

    await transport.subscribe("a", handler, SubscriptionOptions(durable_name="late"))
    async with asyncio.timeout(5):
        await done.wait()
    assert seen == [3, 4, 5]
    await transport.close()


async def test_a_message_dropped_while_unacknowledged_is_not_delivered_again() -> None:
    # As on JetStream with limits retention: the stream, not the consumer, decides.
    broker = MemoryBroker(max_messages=2)
    transport = MemoryTransport(broker)
    deliveries: list[tuple[int, int]] = []
    both_delivered = asyncio.Event()
    control_redelivered = asyncio.Event()

    async def never_acks(message: TransportMessage) -> None:
        deliveries.append((message.sequence, message.delivery_count))
        if message.sequence == 2:
            (both_delivered if message.delivery_count == 1 else control_redelivered).set()

    await transport.subscribe("a", never_acks, SubscriptionOptions(ack_wait=0.2))
    await transport.publish("a", b"first")  # delivered, then dropped
    await transport.publish("a", b"control")  # delivered, kept, redelivered
    async with asyncio.timeout(5):
        await both_delivered.wait()
    await transport.publish("a", b"third")  # drops the first
    assert [m.sequence for m in broker.messages("a")] == [2, 3]

    # The first was due again before the control: had it come back, it came first.
    async with asyncio.timeout(5):
        await control_redelivered.wait()
    assert (1, 1) in deliveries
    assert (1, 2) not in deliveries
    await transport.close()


async def test_connect_sets_the_limits_of_a_fresh_broker() -> None:
    bus = await connect("memory://", max_messages=10, max_bytes=4096, max_payload=2048)
    try:
        transport = bus.transport
        assert isinstance(transport, MemoryTransport)
        broker = transport.broker
        assert (broker.max_messages, broker.max_bytes, broker.max_payload) == (10, 4096, 2048)
        assert transport.max_payload == 2048
    finally:
        await bus.close()

    with pytest.raises(ConfigurationError, match="cannot be given with broker="):
        await connect("memory://", broker=MemoryBroker(), max_messages=10)
    with pytest.raises(ConfigurationError, match="max_messages must be a positive"):
        MemoryBroker(max_messages=0)
    with pytest.raises(ConfigurationError, match="at least max_payload"):
        MemoryBroker(max_bytes=1000, max_payload=2000)
