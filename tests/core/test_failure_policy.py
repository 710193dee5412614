"""The listener's failure policy on the in-memory broker: retry, OutOfOrder, dead letter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from common_events import (
    Bus,
    DeadLetter,
    DeadLetterReason,
    Listener,
    Message,
    OutOfOrder,
    TicketCreatedEvent,
    TicketUpdatedEvent,
    connect,
)
from common_events.transports.base import SubscriptionOptions
from tests.support.collect import Collector

Handler = Callable[[TicketUpdatedEvent, Message], Awaitable[None]]

EVENT = TicketUpdatedEvent(id="t1", version=2, title="x", price=1, user_id="u1")


class ScriptedListener(Listener[TicketUpdatedEvent]):
    """Runs a test's handler and records every delivery it sees."""

    queue_group = "orders-service"
    ack_wait = 0.3
    max_deliveries = 3
    retry_delay = 0.01

    def __init__(self, bus: Bus, handler: Handler) -> None:
        super().__init__(bus)
        self.handler = handler
        self.seen: list[Message] = []
        self.changed = asyncio.Event()

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        self.seen.append(msg)
        self.changed.set()
        await self.handler(event, msg)

    async def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[Message]:
        async with asyncio.timeout(timeout):
            while len(self.seen) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.seen


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with await connect("memory://") as bus:
        yield bus


async def dead_letters(bus: Bus, count: int) -> list[DeadLetter]:
    collector = Collector()
    options = SubscriptionOptions(durable_name="reader")
    await bus.subscribe("dead-letter:ticket:updated", collector, options)
    await collector.wait_for_count(count)
    return [DeadLetter.model_validate_json(m.data) for m in collector.messages]


async def publish(bus: Bus, event: TicketUpdatedEvent = EVENT) -> None:
    await bus.publish("ticket:updated", event.model_dump_json().encode())


async def test_a_failing_handler_is_logged_not_acked_and_retried(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail_once(event: TicketUpdatedEvent, msg: Message) -> None:
        if msg.delivery_count == 1:
            raise RuntimeError("database unavailable")
        await msg.ack()

    listener = await ScriptedListener(bus, fail_once).listen()
    with caplog.at_level(logging.INFO, logger="common_events"):
        await publish(bus)
        first, second = await listener.wait_for_deliveries(2)
    assert (first.acked, first.redelivered) == (False, False)
    assert (second.acked, second.redelivered, second.delivery_count) == (True, True, 2)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "database unavailable" in str(errors[0].exc_info[1])


async def test_out_of_order_is_retried_at_info_level_without_error_logs(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    applied: dict[str, int] = {"t1": 0}

    async def apply_in_order(event: TicketUpdatedEvent, msg: Message) -> None:
        if applied[event.id] != event.previous_version:
            raise OutOfOrder(f"have v{applied[event.id]}, got v{event.version}")
        applied[event.id] = event.version
        await msg.ack()

    listener = await ScriptedListener(bus, apply_in_order).listen()
    with caplog.at_level(logging.DEBUG, logger="common_events"):
        await publish(bus, EVENT)  # version 2 first
        await listener.wait_for_deliveries(1)
        await publish(bus, EVENT.model_copy(update={"version": 1}))
        async with asyncio.timeout(10):
            while applied["t1"] != 2:
                await listener.changed.wait()
                listener.changed.clear()
    assert [(m.sequence, m.acked) for m in listener.seen][:2] == [(1, False), (2, True)]
    assert listener.seen[-1].sequence == 1 and listener.seen[-1].acked
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(
        "out of order" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO
    )


async def test_out_of_order_forever_ends_in_the_dead_letter_subject(bus: Bus) -> None:
    async def never_ready(event: TicketUpdatedEvent, msg: Message) -> None:
        raise OutOfOrder("v1 never came")

    listener = await ScriptedListener(bus, never_ready).listen()
    await publish(bus)
    (letter,) = await dead_letters(bus, 1)
    assert letter.reason is DeadLetterReason.MAX_DELIVERIES
    assert "OutOfOrder" in letter.error and "v1 never came" in letter.error
    assert [m.delivery_count for m in listener.seen] == [1, 2, 3]


async def test_an_ack_before_the_error_counts(bus: Bus) -> None:
    async def ack_then_fail(event: TicketUpdatedEvent, msg: Message) -> None:
        await msg.ack()
        raise RuntimeError("after the ack")

    listener = await ScriptedListener(bus, ack_then_fail).listen()
    await publish(bus)
    await publish(bus, EVENT.model_copy(update={"id": "marker"}))
    seen = await listener.wait_for_deliveries(2)
    await asyncio.sleep(ScriptedListener.ack_wait * 2)  # let a wrongful redelivery happen
    assert [m.sequence for m in seen] == [1, 2]


async def test_a_handler_that_does_not_ack_sees_the_message_again_after_ack_wait(
    bus: Bus,
) -> None:
    async def forget_to_ack(event: TicketUpdatedEvent, msg: Message) -> None:
        return None

    listener = await ScriptedListener(bus, forget_to_ack).listen()
    await publish(bus)
    seen = await listener.wait_for_deliveries(3)
    assert [m.delivery_count for m in seen[:3]] == [1, 2, 3]
    # Past max_deliveries it arrives once more and goes straight to the dead letters,
    # without running the handler.
    (letter,) = await dead_letters(bus, 1)
    assert letter.reason is DeadLetterReason.MAX_DELIVERIES
    assert letter.delivery_count == 4
    assert len(listener.seen) == 3


async def test_a_bad_payload_never_reaches_the_handler(bus: Bus) -> None:
    async def ack(event: TicketUpdatedEvent, msg: Message) -> None:
        await msg.ack()

    listener = await ScriptedListener(bus, ack).listen()
    await bus.publish("ticket:updated", b'{"id":"t1"}')
    await bus.publish(
        "ticket:updated",
        TicketCreatedEvent(id="t2", version=0, title="x", price=1, user_id="u")
        .model_dump_json()
        .replace('"version":0', '"version":"0"')
        .encode(),
    )
    await publish(bus)
    letters = await dead_letters(bus, 2)
    assert {letter.reason for letter in letters} == {DeadLetterReason.INVALID_EVENT}
    assert "userId" in letters[0].error or "title" in letters[0].error
    seen = await listener.wait_for_deliveries(1)
    assert [m.sequence for m in seen] == [3]


async def test_retry_delay_doubles_and_is_capped_at_ack_wait(bus: Bus) -> None:
    async def ack(event: TicketUpdatedEvent, msg: Message) -> None:
        await msg.ack()

    class Slow(ScriptedListener):
        ack_wait = 5.0
        retry_delay = 0.5

    listener = Slow(bus, ack)
    assert [listener.next_retry_delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
