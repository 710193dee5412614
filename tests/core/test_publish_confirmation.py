"""What ``Publisher.publish`` returns: the publish starts when it is called, and the
confirmation is a future (``gather`` makes no task per publish) that is also a coroutine
(``create_task`` takes it)."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from common_events import (
    Bus,
    PublishAck,
    PublishConfirmation,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
    TransportClosed,
    connect,
)
from common_events.core import Middleware, PublishContext, PublishNext
from common_events.transports.memory import MemoryTransport
from tests.support.logs import LogLines, attached
from tests.support.tasks import tasks_created

EVENT = TicketCreatedEvent(id="t1", version=0, title="concert", price=20, user_id="u1")
OTHER = TicketUpdatedEvent(id="t1", version=1, title="concert", price=20, user_id="u1")


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class Held(Middleware):
    """Holds every publish until released; says when one was cancelled."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def publish(self, context: PublishContext, call_next: PublishNext) -> PublishAck:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return await call_next(context)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with await connect("memory://") as bus:
        yield bus


def stored(bus: Bus) -> int:
    assert isinstance(bus.transport, MemoryTransport)
    return len(bus.transport.broker.messages(EVENT.subject.value))


async def test_the_event_is_sent_when_publish_is_called(bus: Bus) -> None:
    confirmation = TicketCreatedPublisher(bus).publish(EVENT)
    assert stored(bus) == 1  # before anything awaited it
    assert isinstance(confirmation, PublishConfirmation)
    assert await confirmation == PublishAck(subject="ticket:created", sequence=1)


async def test_gathered_publishes_need_no_task_each(bus: Bus) -> None:
    publisher = TicketCreatedPublisher(bus)
    with tasks_created() as created:
        acks = await asyncio.gather(*(publisher.publish(EVENT) for _ in range(100)))
    assert [ack.sequence for ack in acks] == list(range(1, 101))
    assert created == []


async def test_create_task_and_task_groups_take_a_publish(bus: Bus) -> None:
    publisher = TicketCreatedPublisher(bus)
    assert asyncio.iscoroutine(publisher.publish(EVENT))
    first = await asyncio.create_task(publisher.publish(EVENT))
    async with asyncio.TaskGroup() as group:
        second = group.create_task(publisher.publish(EVENT))
    assert first.sequence is not None and second.result().sequence == first.sequence + 1
    assert await asyncio.wait_for(publisher.publish(EVENT), 5) == PublishAck(
        subject="ticket:created", sequence=first.sequence + 2
    )


async def test_a_wrong_event_type_fails_its_own_confirmation_only(bus: Bus) -> None:
    publisher = TicketCreatedPublisher(bus)
    wrong = publisher.publish(OTHER)  # type: ignore[arg-type]  # does not raise here
    results = await asyncio.gather(
        publisher.publish(EVENT), wrong, publisher.publish(EVENT), return_exceptions=True
    )
    assert isinstance(results[0], PublishAck) and isinstance(results[2], PublishAck)
    assert isinstance(results[1], TypeError) and "TicketUpdatedEvent" in str(results[1])
    assert stored(bus) == 2


async def test_a_closed_bus_fails_the_confirmation_not_the_call() -> None:
    bus = await connect("memory://")
    await bus.close()
    confirmation = TicketCreatedPublisher(bus).publish(EVENT)
    with pytest.raises(TransportClosed, match="closed"):
        await confirmation


async def test_through_middlewares_a_publish_is_a_coroutine_that_sends_when_it_runs() -> None:
    held = Held()
    held.release.set()
    async with await connect("memory://", middleware=[held]) as bus:
        publisher = TicketCreatedPublisher(bus)
        publication = publisher.publish(EVENT)
        assert asyncio.iscoroutine(publication)
        assert not isinstance(publication, PublishConfirmation)
        await asyncio.sleep(0)
        assert stored(bus) == 0  # the middlewares run when it does
        assert (await publication).sequence == 1
        acks = await asyncio.gather(*(publisher.publish(EVENT) for _ in range(3)))
        assert [ack.sequence for ack in acks] == [2, 3, 4]
        assert (await asyncio.create_task(publisher.publish(EVENT))).sequence == 5


async def test_giving_up_on_a_publish_stops_it_in_the_middlewares() -> None:
    held = Held()
    async with await connect("memory://", middleware=[held]) as bus:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(TicketCreatedPublisher(bus).publish(EVENT), 0.2)
        await asyncio.wait_for(held.cancelled.wait(), 5)
        held.release.set()
        assert (await TicketCreatedPublisher(bus).publish(EVENT)).sequence == 1
        assert stored(bus) == 1  # only the second


@pytest.fixture
def debug_lines() -> Iterator[LogLines]:
    with attached(LogLines(), "common_events.core.publisher") as lines:
        yield lines


async def test_with_debug_logging_gather_still_needs_no_task_and_logs_each_ack(
    bus: Bus, debug_lines: LogLines
) -> None:
    publisher = TicketCreatedPublisher(bus)
    with tasks_created() as created:
        acks = await asyncio.gather(*(publisher.publish(EVENT) for _ in range(20)))
    assert created == []
    assert debug_lines.lines == [f"published ticket:created: {ack}" for ack in acks]


async def test_with_debug_logging_a_failed_publish_says_so_and_still_raises(
    debug_lines: LogLines,
) -> None:
    bus = await connect("memory://")
    await bus.close()
    with pytest.raises(TransportClosed):
        await TicketCreatedPublisher(bus).publish(EVENT)
    await debug_lines.wait_for("publish failed: ", within=5)
    assert len(debug_lines.lines) == 1 and debug_lines.lines[0].startswith("publish failed: ")


def test_outside_an_event_loop_a_wrong_event_type_raises_when_the_publish_runs() -> None:
    bus = asyncio.run(connect("memory://"))
    try:
        publication = TicketCreatedPublisher(bus).publish(OTHER)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not TicketUpdatedEvent"):
            asyncio.run(publication)
    finally:
        asyncio.run(bus.close())


def test_publish_says_it_is_a_coroutine_function_where_python_can() -> None:
    # Python 3.12 can mark a function that returns a coroutine; 3.11 cannot.
    expected = sys.version_info >= (3, 12)
    assert inspect.iscoroutinefunction(TicketCreatedPublisher.publish) is expected
