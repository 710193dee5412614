"""The conformance suite every transport passes (the idea of Watermill's universal tests).

Parametrised over ``TRANSPORTS`` in tests/conftest.py: each test gets a factory of
transports on one fresh broker. Subjects are the system's own, so the suite runs
unchanged on brokers that only store those (JetStream's stream).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from common_events.transports.base import (
    MessageHandler,
    PublishAck,
    SubscriptionOptions,
    TransportMessage,
)
from tests.support.collect import Collector
from tests.support.factory import TransportFactory

SUBJECT = "ticket:created"


def payload(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


def numbers(collector: Collector) -> list[int]:
    return [json.loads(data)["n"] for data in collector.payloads]


async def test_publish_then_subscribe_delivers_everything_in_order(
    transport_factory: TransportFactory,
) -> None:
    transport = await transport_factory()
    acks = [await transport.publish(SUBJECT, payload(n)) for n in range(5)]
    assert all(ack.subject == SUBJECT for ack in acks)

    collector = Collector()
    await transport.subscribe(SUBJECT, collector, SubscriptionOptions(durable_name="d"))
    messages = await collector.wait_for_count(5)

    assert numbers(collector) == [0, 1, 2, 3, 4]
    sequences = [m.sequence for m in messages]
    assert sequences == sorted(sequences) and len(set(sequences)) == 5
    first = messages[0]
    assert first.subject == SUBJECT
    assert first.redelivered is False
    assert first.delivery_count == 1
    assert first.timestamp.tzinfo is not None


async def test_subscriber_receives_messages_published_after_it_subscribed(
    transport_factory: TransportFactory,
) -> None:
    publisher, subscriber = await transport_factory(), await transport_factory()
    collector = Collector()
    await subscriber.subscribe(SUBJECT, collector, SubscriptionOptions(durable_name="d"))
    for n in range(3):
        await publisher.publish(SUBJECT, payload(n))
    await collector.wait_for_count(3)
    assert numbers(collector) == [0, 1, 2]


async def test_other_subjects_are_not_delivered(transport_factory: TransportFactory) -> None:
    transport = await transport_factory()
    collector = Collector()
    await transport.subscribe(SUBJECT, collector, SubscriptionOptions(durable_name="d"))
    await transport.publish("ticket:updated", payload(1))
    await transport.publish(SUBJECT, payload(2))
    await collector.wait_for_count(1)
    assert numbers(collector) == [2]


async def test_queue_group_members_split_the_work_none_lost_or_doubled(
    transport_factory: TransportFactory,
) -> None:
    options = SubscriptionOptions(queue_group="orders-service", durable_name="orders-service")
    first, second, both = Collector(), Collector(), Collector(ack=False)

    def member(collector: Collector) -> MessageHandler:
        async def handle(message: TransportMessage) -> None:
            await collector(message)
            await both(message)

        return handle

    service_a, service_b = await transport_factory(), await transport_factory()
    await service_a.subscribe(SUBJECT, member(first), options)
    await service_b.subscribe(SUBJECT, member(second), options)

    publisher = await transport_factory()
    await asyncio.gather(*(publisher.publish(SUBJECT, payload(n)) for n in range(100)))

    await both.wait_for_count(100, timeout=20)
    received = numbers(first) + numbers(second)
    assert sorted(received) == list(range(100)), "every message exactly once"
    assert first.messages and second.messages, "both members got a share"


async def test_durable_resumes_where_it_left_off_after_close(
    transport_factory: TransportFactory,
) -> None:
    publisher = await transport_factory()
    options = SubscriptionOptions(queue_group="q", durable_name="q")
    for n in range(3):
        await publisher.publish(SUBJECT, payload(n))

    service = await transport_factory()
    before = Collector()
    subscription = await service.subscribe(SUBJECT, before, options)
    await before.wait_for_count(3)
    await subscription.close()

    for n in range(3, 6):
        await publisher.publish(SUBJECT, payload(n))

    after = Collector()
    restarted = await transport_factory()
    await restarted.subscribe(SUBJECT, after, options)
    await after.wait_for_count(3)
    assert numbers(after)[:3] == [3, 4, 5]


async def test_close_keeps_the_durable_and_unsubscribe_removes_it(
    transport_factory: TransportFactory,
) -> None:
    publisher = await transport_factory()
    service = await transport_factory()
    options = SubscriptionOptions(durable_name="keeper")
    await publisher.publish(SUBJECT, payload(0))

    first = Collector()
    subscription = await service.subscribe(SUBJECT, first, options)
    await first.wait_for_count(1)
    await subscription.close()

    await publisher.publish(SUBJECT, payload(1))
    resumed = Collector()
    subscription = await service.subscribe(SUBJECT, resumed, options)
    await resumed.wait_for_count(1)
    assert numbers(resumed) == [1], "close kept the durable's position"
    await subscription.unsubscribe()

    await publisher.publish(SUBJECT, payload(2))
    fresh = Collector()
    await service.subscribe(SUBJECT, fresh, options)
    await fresh.wait_for_count(3)
    assert numbers(fresh) == [0, 1, 2], "unsubscribe removed it: a new durable starts over"


async def test_unacknowledged_message_is_redelivered_after_ack_wait(
    transport_factory: TransportFactory,
) -> None:
    transport = await transport_factory()
    collector = Collector(ack=False)
    options = SubscriptionOptions(durable_name="slow", ack_wait=1.0)
    await transport.subscribe(SUBJECT, collector, options)
    await transport.publish(SUBJECT, payload(7))

    first, second = (await collector.wait_for_count(2, timeout=15))[:2]
    assert first.sequence == second.sequence
    assert (first.redelivered, first.delivery_count) == (False, 1)
    assert (second.redelivered, second.delivery_count) == (True, 2)
    assert second.data == first.data


async def test_acknowledged_message_is_not_redelivered(
    transport_factory: TransportFactory,
) -> None:
    transport = await transport_factory()
    collector = Collector(ack=True)
    options = SubscriptionOptions(durable_name="fast", ack_wait=1.0)
    await transport.subscribe(SUBJECT, collector, options)
    await transport.publish(SUBJECT, payload(1))
    await collector.wait_for_count(1)

    # Absence can only be shown by letting the ack wait run out; then a marker message
    # proves the subscription is still delivering.
    await asyncio.sleep(2.5)
    await transport.publish(SUBJECT, payload(2))
    await collector.wait_for_count(2)
    await asyncio.sleep(0.2)
    assert numbers(collector) == [1, 2]
    assert all(not m.redelivered for m in collector.messages)


async def test_max_in_flight_bounds_unacknowledged_deliveries(
    transport_factory: TransportFactory,
) -> None:
    transport = await transport_factory()
    collector = Collector(ack=False)
    options = SubscriptionOptions(durable_name="bounded", max_in_flight=3, ack_wait=30.0)
    await transport.subscribe(SUBJECT, collector, options)
    for n in range(10):
        await transport.publish(SUBJECT, payload(n))

    await collector.wait_for_count(3)
    # Nothing more may arrive while three are unacknowledged; give it time to try.
    await asyncio.sleep(0.7)
    assert len(collector.messages) == 3

    await collector.messages[0].ack()
    await collector.wait_for_count(4)
    await asyncio.sleep(0.3)
    assert len(collector.messages) == 4
    assert numbers(collector) == [0, 1, 2, 3]


@pytest.mark.parametrize("count", [3])
async def test_redelivered_message_keeps_counting(
    transport_factory: TransportFactory, count: int
) -> None:
    transport = await transport_factory()
    collector = Collector(ack=False)
    await transport.subscribe(
        SUBJECT, collector, SubscriptionOptions(durable_name="counting", ack_wait=1.0)
    )
    await transport.publish(SUBJECT, payload(0))
    messages = await collector.wait_for_count(count, timeout=20)
    assert [m.delivery_count for m in messages[:count]] == list(range(1, count + 1))
    await messages[count - 1].ack()


async def test_publish_many_stores_every_payload_in_order(
    transport_factory: TransportFactory,
) -> None:
    transport = await transport_factory()
    results = await transport.publish_many(SUBJECT, [payload(n) for n in range(200)])
    assert all(isinstance(result, PublishAck) for result in results)
    assert len(results) == 200

    collector = Collector()
    await transport.subscribe(SUBJECT, collector, SubscriptionOptions(durable_name="batch"))
    await collector.wait_for_count(200)
    assert numbers(collector) == list(range(200))
