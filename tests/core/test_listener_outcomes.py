"""``Listener.handle_delivery`` returns the outcome, carries it out, and never raises."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import pytest

from common_events import (
    Bus,
    DeadLetterReason,
    Listener,
    Message,
    OutOfOrder,
    TicketUpdatedEvent,
    TransportError,
    connect,
)
from common_events.core import (
    Acked,
    DeadLettered,
    LeftForRedelivery,
    NotAcked,
    NotSettled,
    OutOfOrderLater,
    RetryLater,
    decode_dead_letter,
)
from common_events.testing import PublishedEvents

EVENT = TicketUpdatedEvent(id="t1", version=2, title="x", price=1, user_id="u1")


class StubMessage:
    """A delivery whose broker side a test controls: it records acks and negative acks,
    and can refuse them."""

    def __init__(
        self,
        data: bytes = EVENT.model_dump_json().encode(),
        *,
        delivery_count: int = 1,
        refuse: TransportError | None = None,
    ) -> None:
        self.subject = "ticket:updated"
        self.data = data
        self.sequence = 5
        self.delivery_count = delivery_count
        self.redelivered = delivery_count > 1
        self.timestamp = datetime.now(UTC)
        self.headers: Mapping[str, str] = {}
        self.refuse = refuse
        self.acks = 0
        self.naks: list[float | None] = []

    async def ack(self) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.acks += 1

    async def nak(self, delay: float | None = None) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.naks.append(delay)


class TicketUpdatedListener(Listener[TicketUpdatedEvent]):
    queue_group = "orders-service"
    max_deliveries = 3
    retry_delay = 0.25

    def __init__(self, bus: Bus, *, raises: Exception | None = None, ack: bool = True) -> None:
        super().__init__(bus)
        self.raises = raises
        self.ack = ack
        self.handled = 0

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        self.handled += 1
        if self.raises is not None:
            raise self.raises
        if self.ack:
            await msg.ack()


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with await connect("memory://") as bus:
        yield bus


async def test_an_acknowledged_delivery_is_acked(bus: Bus) -> None:
    message = StubMessage()

    outcome = await TicketUpdatedListener(bus).handle_delivery(message)

    assert outcome == Acked()
    assert message.acks == 1 and message.naks == []


async def test_a_handler_that_forgets_to_ack_is_reported_not_acked(bus: Bus) -> None:
    message = StubMessage()

    outcome = await TicketUpdatedListener(bus, ack=False).handle_delivery(message)

    assert outcome == NotAcked()
    assert message.acks == 0 and message.naks == []


async def test_a_failing_handler_is_negatively_acked_with_the_retry_delay(bus: Bus) -> None:
    error = ConnectionError("database unavailable")
    message = StubMessage(delivery_count=2)

    outcome = await TicketUpdatedListener(bus, raises=error).handle_delivery(message)

    assert outcome == RetryLater(0.5, error)
    assert message.naks == [0.5]


async def test_out_of_order_is_negatively_acked_as_out_of_order(bus: Bus) -> None:
    error = OutOfOrder("needs version 1")
    message = StubMessage()

    outcome = await TicketUpdatedListener(bus, raises=error).handle_delivery(message)

    assert outcome == OutOfOrderLater(0.25, error)
    assert message.naks == [0.25]


async def test_a_dead_lettered_outcome_carries_the_record_that_was_published(bus: Bus) -> None:
    message = StubMessage(b"{not json")

    outcome = await TicketUpdatedListener(bus).handle_delivery(message)

    assert isinstance(outcome, DeadLettered)
    assert outcome.record.reason is DeadLetterReason.INVALID_JSON
    (published,) = PublishedEvents(bus).raw(outcome.subject)
    assert decode_dead_letter(published.data) == outcome.record
    assert message.acks == 1


async def test_a_refused_negative_ack_is_not_settled_and_does_not_raise(bus: Bus) -> None:
    error = ConnectionError("database unavailable")
    refusal = TransportError("connection closed")
    listener = TicketUpdatedListener(bus, raises=error)

    outcome = await listener.handle_delivery(StubMessage(refuse=refusal))

    assert outcome == NotSettled(RetryLater(0.25, error), refusal)
    assert listener.in_flight == 0


async def test_a_failed_dead_letter_publish_leaves_the_message_unacknowledged(
    bus: Bus,
) -> None:
    message = StubMessage(b"{not json")
    await bus.close()  # the publish of the record fails

    outcome = await TicketUpdatedListener(bus).handle_delivery(message)

    assert isinstance(outcome, NotSettled)
    assert isinstance(outcome.intended, DeadLettered)
    assert isinstance(outcome.error, TransportError)
    assert message.acks == 0


async def test_a_paused_listener_leaves_the_message_without_running_the_handler(
    bus: Bus,
) -> None:
    listener = TicketUpdatedListener(bus)
    listener.pause()
    message = StubMessage()

    outcome = await listener.handle_delivery(message)

    assert outcome == LeftForRedelivery()
    assert listener.handled == 0
    assert message.acks == 0 and message.naks == []


async def test_a_handler_error_is_logged_once_by_the_listener_and_not_by_the_transport(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    done = asyncio.Event()

    class FailingOnce(TicketUpdatedListener):
        retry_delay = 0.01

        async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
            if msg.delivery_count == 1:
                raise RuntimeError("database unavailable")
            await msg.ack()
            done.set()

    listener = await FailingOnce(bus).listen()
    with caplog.at_level(logging.DEBUG, logger="common_events"):
        await bus.publish("ticket:updated", EVENT.model_dump_json().encode())
        async with asyncio.timeout(5):
            await done.wait()
    await listener.close()
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.name for record in errors] == ["common_events.core.listener.FailingOnce"]


async def test_close_drains_for_at_most_the_drain_timeout(bus: Bus) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    class Stuck(TicketUpdatedListener):
        async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
            started.set()
            await release.wait()

    listener = await Stuck(bus).listen()
    await bus.publish("ticket:updated", EVENT.model_dump_json().encode())
    async with asyncio.timeout(5):
        await started.wait()
    began = time.monotonic()
    await listener.close(drain_timeout=0.2)
    # One drain of 0.2 s in the listener; closing the subscription adds no second wait.
    assert time.monotonic() - began < 1.0
    assert not listener.listening
    release.set()


@pytest.mark.parametrize("leave", ["close", "unsubscribe"])
async def test_grace_still_works_with_a_deprecation_warning(bus: Bus, leave: str) -> None:
    listener = await TicketUpdatedListener(bus).listen()

    with pytest.warns(
        DeprecationWarning, match="grace= is deprecated; use drain_timeout="
    ) as caught:
        await getattr(listener, leave)(grace=1.0)

    assert caught[0].filename == __file__  # the warning points at the caller
    assert not listener.listening


async def test_grace_and_drain_timeout_together_are_refused(bus: Bus) -> None:
    listener = await TicketUpdatedListener(bus).listen()
    with pytest.raises(TypeError, match="drain_timeout"):
        await listener.close(drain_timeout=1.0, grace=1.0)
    await listener.close()
