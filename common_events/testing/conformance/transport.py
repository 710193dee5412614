"""The transport half of the conformance suite: bytes on subjects, acks, redelivery.

Every test gets ``transport_factory`` from the subclass: a factory of connected
transports on one fresh broker. Subjects are the system's own, so the suite runs
unchanged on brokers that store only those (JetStream's stream).
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from common_events.errors import TransportError
from common_events.events.subjects import Subjects
from common_events.testing.conformance.collect import Collector, TransportFactory
from common_events.testing.conformance.features import FeatureGate, requires
from common_events.transports.base import (
    ImmediatePublisher,
    MessageHandler,
    PublishAck,
    PublishConfirmation,
    SubscriptionOptions,
    Transport,
    TransportMessage,
)

__all__ = ["TransportConformance"]

logger = logging.getLogger(__name__)

SUBJECT = Subjects.TICKET_CREATED.value
OTHER_SUBJECT = Subjects.TICKET_UPDATED.value


def payload(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


def numbers(collector: Collector) -> list[int]:
    return [json.loads(data)["n"] for data in collector.payloads]


async def subscribed(
    transport_factory: TransportFactory,
    durable_name: str,
    *,
    ack: bool = True,
    ack_wait: float = 5.0,
    max_in_flight: int = 16,
) -> tuple[Transport, Collector]:
    """A new transport with a collector subscribed to ``SUBJECT`` as ``durable_name``."""
    transport = await transport_factory()
    collector = Collector(ack=ack)
    options = SubscriptionOptions(
        durable_name=durable_name, ack_wait=ack_wait, max_in_flight=max_in_flight
    )
    await transport.subscribe(SUBJECT, collector, options)
    return transport, collector


async def redelivered_after_nak(
    transport_factory: TransportFactory,
    *,
    ack_wait: float,
    within: float,
    delay: float | None = None,
) -> tuple[TransportMessage, TransportMessage]:
    """The first delivery, refused with ``nak(delay)``, and the next one (acked)."""
    transport, collector = await subscribed(
        transport_factory, "refused", ack=False, ack_wait=ack_wait
    )
    await transport.publish(SUBJECT, payload(3))
    (first,) = await collector.wait_for_count(1)
    await first.nak(delay)
    second = (await collector.wait_for_count(2, within=within))[1]
    await second.ack()
    return first, second


class TransportConformance(FeatureGate):
    """What every ``Transport`` does, tested through the transport interface alone.

    Subclass it (as ``Test...``), set ``features`` and provide a ``transport_factory``
    fixture; see ``docs/conformance.md``.
    """

    @pytest.mark.asyncio
    async def test_publish_then_subscribe_delivers_everything_in_order(
        self, transport_factory: TransportFactory
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

    @requires("immediate_publish")
    @pytest.mark.asyncio
    async def test_publish_now_sends_at_once_and_confirms_in_order(
        self, transport_factory: TransportFactory
    ) -> None:
        transport = await transport_factory()
        assert isinstance(transport, ImmediatePublisher)
        collector = Collector()
        await transport.subscribe(SUBJECT, collector, SubscriptionOptions(durable_name="d"))
        confirmations = [transport.publish_now(SUBJECT, payload(n)) for n in range(20)]
        assert all(isinstance(item, PublishConfirmation) for item in confirmations)
        await collector.wait_for_count(20)  # no confirmation awaited yet
        acks = await asyncio.gather(*confirmations)
        assert all(isinstance(ack, PublishAck) and ack.subject == SUBJECT for ack in acks)
        assert numbers(collector) == list(range(20))

    @pytest.mark.asyncio
    async def test_subscriber_receives_messages_published_after_it_subscribed(
        self, transport_factory: TransportFactory
    ) -> None:
        publisher, subscriber = await transport_factory(), await transport_factory()
        collector = Collector()
        await subscriber.subscribe(SUBJECT, collector, SubscriptionOptions(durable_name="d"))
        for n in range(3):
            await publisher.publish(SUBJECT, payload(n))
        await collector.wait_for_count(3)
        assert numbers(collector) == [0, 1, 2]

    @pytest.mark.asyncio
    async def test_other_subjects_are_not_delivered(
        self, transport_factory: TransportFactory
    ) -> None:
        transport, collector = await subscribed(transport_factory, "d")
        await transport.publish(OTHER_SUBJECT, payload(1))
        await transport.publish(SUBJECT, payload(2))
        await collector.wait_for_count(1)
        assert numbers(collector) == [2]

    @requires("queue_groups")
    @pytest.mark.asyncio
    async def test_queue_group_members_split_the_work_none_lost_or_doubled(
        self, transport_factory: TransportFactory
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

        await both.wait_for_count(100, within=20)
        received = numbers(first) + numbers(second)
        assert sorted(received) == list(range(100)), "every message exactly once"
        assert first.messages and second.messages, "both members got a share"

    @requires("durable_across_reconnect")
    @pytest.mark.asyncio
    async def test_durable_resumes_where_it_left_off_after_close(
        self, transport_factory: TransportFactory
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

    @pytest.mark.asyncio
    async def test_close_keeps_the_durable_and_unsubscribe_removes_it(
        self, transport_factory: TransportFactory
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

    @pytest.mark.asyncio
    async def test_unacknowledged_message_is_redelivered_after_ack_wait(
        self, transport_factory: TransportFactory
    ) -> None:
        transport, collector = await subscribed(transport_factory, "slow", ack=False, ack_wait=1)
        await transport.publish(SUBJECT, payload(7))

        first, second = (await collector.wait_for_count(2, within=15))[:2]
        assert first.sequence == second.sequence
        assert (first.redelivered, second.redelivered) == (False, True)
        assert second.data == first.data

    @requires("redelivery_count")
    @pytest.mark.asyncio
    async def test_redelivered_message_keeps_counting(
        self, transport_factory: TransportFactory
    ) -> None:
        count = 3
        transport, collector = await subscribed(
            transport_factory, "counting", ack=False, ack_wait=1
        )
        await transport.publish(SUBJECT, payload(0))
        messages = await collector.wait_for_count(count, within=20)
        assert [m.delivery_count for m in messages[:count]] == list(range(1, count + 1))
        await messages[count - 1].ack()

    @pytest.mark.asyncio
    async def test_acknowledged_message_is_not_redelivered(
        self, transport_factory: TransportFactory
    ) -> None:
        transport, collector = await subscribed(transport_factory, "fast", ack_wait=1)
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

    @pytest.mark.asyncio
    async def test_nak_is_accepted_and_the_message_comes_back(
        self, transport_factory: TransportFactory
    ) -> None:
        first, second = await redelivered_after_nak(transport_factory, ack_wait=1, within=15)
        assert (second.sequence, second.data) == (first.sequence, first.data)
        assert second.redelivered

    @requires("negative_ack")
    @pytest.mark.asyncio
    async def test_nak_hands_the_message_back_before_ack_wait(
        self, transport_factory: TransportFactory
    ) -> None:
        first, second = await redelivered_after_nak(
            transport_factory, ack_wait=30, delay=0.2, within=10
        )
        assert second.sequence == first.sequence
        assert second.redelivered

    @requires("in_progress")
    @pytest.mark.asyncio
    async def test_in_progress_holds_redelivery_off(
        self, transport_factory: TransportFactory
    ) -> None:
        transport, collector = await subscribed(
            transport_factory, "working", ack=False, ack_wait=1
        )
        await transport.publish(SUBJECT, payload(5))

        (message,) = await collector.wait_for_count(1)
        in_progress = getattr(message, "in_progress", None)
        assert callable(in_progress), "Features.in_progress is set: messages need in_progress()"
        for _ in range(6):  # 2.4 s of work, well past ack_wait
            await in_progress()
            await asyncio.sleep(0.4)
        await message.ack()
        await asyncio.sleep(1.5)
        assert len(collector.messages) == 1, "the message came back while still in progress"

    @requires("headers")
    @pytest.mark.asyncio
    async def test_headers_travel_with_the_message(
        self, transport_factory: TransportFactory
    ) -> None:
        transport, collector = await subscribed(transport_factory, "h")
        sent = {"Trace-Id": "4bf92f3577b34da6", "Event-Id": "e-1"}
        await transport.publish(SUBJECT, payload(1), sent)
        await transport.publish(SUBJECT, payload(2))

        with_headers, without = await collector.wait_for_count(2)
        assert {name: with_headers.headers.get(name) for name in sent} == sent
        assert not set(sent) & set(without.headers)

    @pytest.mark.asyncio
    async def test_publish_with_headers_delivers_the_payload_everywhere(
        self, transport_factory: TransportFactory
    ) -> None:
        transport, collector = await subscribed(transport_factory, "h")
        await transport.publish(SUBJECT, payload(1), {"Event-Id": "e-1"})

        (message,) = await collector.wait_for_count(1)
        assert numbers(collector) == [1]
        if not self.features.headers:
            assert dict(message.headers) == {}, "a transport without headers has none to show"

    @pytest.mark.asyncio
    async def test_max_in_flight_bounds_unacknowledged_deliveries(
        self, transport_factory: TransportFactory
    ) -> None:
        transport, collector = await subscribed(
            transport_factory, "bounded", ack=False, ack_wait=30, max_in_flight=3
        )
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

    @pytest.mark.asyncio
    async def test_publish_many_stores_every_payload_in_order(
        self, transport_factory: TransportFactory
    ) -> None:
        transport = await transport_factory()
        results = await transport.publish_many(SUBJECT, [payload(n) for n in range(200)])
        assert all(isinstance(result, PublishAck) for result in results)
        assert len(results) == 200

        collector = Collector()
        await transport.subscribe(SUBJECT, collector, SubscriptionOptions(durable_name="batch"))
        await collector.wait_for_count(200)
        assert numbers(collector) == list(range(200))

    @pytest.mark.asyncio
    async def test_close_is_idempotent_and_a_closed_transport_refuses_to_publish(
        self, transport_factory: TransportFactory
    ) -> None:
        transport = await transport_factory()
        await transport.publish(SUBJECT, payload(1))
        await transport.close()
        await transport.close()
        with pytest.raises(TransportError):
            await transport.publish(SUBJECT, payload(2))
