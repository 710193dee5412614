from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from common_events import (
    Bus,
    DeadLetterReason,
    Listener,
    Message,
    OutOfOrder,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.core import Acked, DeadLettered, OutOfOrderLater
from common_events.testing import DeliveryOutcome, PublishedEvents, deliver


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class TicketUpdatedListener(Listener[TicketUpdatedEvent]):
    """Applies version N on top of N-1, as the orders service of the reference does."""

    queue_group = "orders-service"
    max_deliveries = 3

    def __init__(self, bus: Bus, versions: dict[str, int]) -> None:
        super().__init__(bus)
        self.versions = versions
        self.fail_with: Exception | None = None

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if self.versions.get(event.id) != event.previous_version:
            raise OutOfOrder(f"ticket {event.id} is not at version {event.previous_version}")
        self.versions[event.id] = event.version
        await msg.ack()


def update(version: int) -> TicketUpdatedEvent:
    return TicketUpdatedEvent(id="t1", version=version, title="Concert", price=20, user_id="u1")


async def test_acks_the_message(event_bus: Bus) -> None:
    listener = TicketUpdatedListener(event_bus, {"t1": 0})

    result = await deliver(listener, update(1))

    assert result.outcome is DeliveryOutcome.ACKED
    assert result.acked and not result.not_acked and not result.dead_lettered
    assert result.result == Acked()
    assert listener.versions == {"t1": 1}


async def test_does_not_ack_a_skipped_version(event_bus: Bus) -> None:
    listener = TicketUpdatedListener(event_bus, {"t1": 0})

    result = await deliver(listener, update(2))

    assert result.not_acked
    assert isinstance(result.error, OutOfOrder)
    assert result.retry_delay == pytest.approx(listener.retry_delay)
    assert result.result == OutOfOrderLater(listener.retry_delay, result.error)
    assert listener.versions == {"t1": 0}


async def test_a_failing_handler_is_not_acked_and_the_error_is_reported(event_bus: Bus) -> None:
    listener = TicketUpdatedListener(event_bus, {"t1": 0})
    listener.fail_with = KeyError("no such ticket")

    result = await deliver(listener, update(1))

    assert result.not_acked
    assert result.error is listener.fail_with
    assert "handler raised KeyError" in str(result)


async def test_invalid_json_is_dead_lettered_with_the_reason(
    event_bus: Bus, published: PublishedEvents
) -> None:
    listener = TicketUpdatedListener(event_bus, {})

    result = await deliver(listener, b"{not json")

    assert result.dead_lettered and not result.acked
    assert result.dead_letter is not None
    assert result.dead_letter.reason is DeadLetterReason.INVALID_JSON
    assert result.dead_letter.original_payload() == b"{not json"
    assert published.dead_letters(TicketUpdatedEvent) == [result.dead_letter]
    assert result.error is None  # the handler never saw it
    assert isinstance(result.result, DeadLettered)
    assert result.result.subject == "dead-letter:ticket:updated"


async def test_an_invalid_event_given_as_a_json_object_is_dead_lettered(event_bus: Bus) -> None:
    listener = TicketUpdatedListener(event_bus, {})

    result = await deliver(listener, {"id": "t1", "version": "1"})

    assert result.dead_lettered
    assert result.dead_letter is not None
    assert result.dead_letter.reason is DeadLetterReason.INVALID_EVENT
    assert result.data == b'{"id":"t1","version":"1"}'


async def test_the_last_allowed_delivery_of_a_failing_message_is_dead_lettered(
    event_bus: Bus,
) -> None:
    listener = TicketUpdatedListener(event_bus, {"t1": 0})

    on_second = await deliver(listener, update(2), delivery_count=2)
    on_last = await deliver(listener, update(2), delivery_count=listener.max_deliveries)

    assert on_second.not_acked
    assert on_last.dead_lettered
    assert on_last.dead_letter is not None
    assert on_last.dead_letter.reason is DeadLetterReason.MAX_DELIVERIES
    assert on_last.dead_letter.delivery_count == listener.max_deliveries
    assert isinstance(on_last.error, OutOfOrder)  # what the handler raised the last time


async def test_a_listener_that_is_not_listening_stays_so(event_bus: Bus) -> None:
    listener = TicketUpdatedListener(event_bus, {"t1": 0})

    await deliver(listener, update(1))

    assert not listener.listening
    assert listener.in_flight == 0


async def test_deliver_works_beside_a_listening_listener(
    event_bus: Bus, published: PublishedEvents
) -> None:
    listener = await TicketUpdatedListener(event_bus, {"t1": 0}).listen()
    try:
        result = await deliver(listener, update(1))
    finally:
        await listener.close()

    assert result.acked
    # The delivered message came from a broker of its own, not from the test's bus.
    assert published.raw("ticket:updated") == ()


async def test_an_event_of_another_type_is_refused(event_bus: Bus) -> None:
    listener = TicketUpdatedListener(event_bus, {})
    created = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")

    with pytest.raises(TypeError, match="listens to TicketUpdatedEvent"):
        await deliver(listener, created)


async def test_a_handler_that_never_returns_times_out(event_bus: Bus) -> None:
    class StuckListener(Listener[TicketCreatedEvent]):
        queue_group = "stuck"
        release: ClassVar[asyncio.Event]

        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
            await self.release.wait()

    StuckListener.release = asyncio.Event()
    event = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")
    try:
        with pytest.raises(TimeoutError, match=r"StuckListener\.on_message did not return"):
            await deliver(StuckListener(event_bus), event, handler_timeout=0.2)
    finally:
        StuckListener.release.set()


async def test_a_handler_that_acks_and_then_raises_is_acked_with_the_error(
    event_bus: Bus,
) -> None:
    class AckThenFail(TicketUpdatedListener):
        async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
            await msg.ack()
            raise RuntimeError("after the ack")

    result = await deliver(AckThenFail(event_bus, {}), update(1))

    assert result.acked
    assert isinstance(result.error, RuntimeError)
    assert result.retry_delay is None


async def test_a_dead_letter_that_cannot_be_published_is_not_acked_and_says_why(
    event_bus: Bus,
) -> None:
    listener = TicketUpdatedListener(event_bus, {})
    await event_bus.close()

    result = await deliver(listener, b"{not json")

    assert result.not_acked
    assert result.dead_letter is None
    assert "not settled: TransportClosed" in str(result)


class RecordingListener(Listener[TicketUpdatedEvent]):
    queue_group = "orders-service"

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.seen: list[tuple[int, dict[str, str]]] = []

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        self.seen.append((msg.sequence, dict(msg.headers)))
        await msg.ack()


async def test_a_delivery_carries_the_sequence_and_headers_it_is_given(event_bus: Bus) -> None:
    listener = RecordingListener(event_bus)

    await deliver(listener, update(1))
    await deliver(listener, update(2), sequence=7, headers={"Nats-Msg-Id": "row-2"})

    assert listener.seen[0][0] == 1
    assert listener.seen[1] == (7, {"Nats-Msg-Id": "row-2"})
