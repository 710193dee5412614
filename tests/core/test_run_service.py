"""``run_service``: SIGTERM stops intake, waits for handlers, keeps durables, closes."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from common_events import (
    Bus,
    Listener,
    Message,
    Publisher,
    RunningService,
    ServiceCompanion,
    TicketCreatedEvent,
    connect,
    run_service,
)
from common_events.transports.memory import MemoryBroker, MemoryTransport


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class SlowListener(Listener[TicketCreatedEvent]):
    queue_group = "orders-service"

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished: list[str] = []
        self.done = asyncio.Event()
        self.paused = asyncio.Event()

    def pause(self) -> None:
        super().pause()
        self.paused.set()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.started.set()
        await self.release.wait()
        self.finished.append(event.id)
        await msg.ack()
        self.done.set()


def ticket(n: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"t{n}", version=0, title="x", price=1, user_id="u")


async def test_sigterm_waits_for_the_handler_in_flight_then_closes() -> None:
    broker = MemoryBroker()
    bus = await connect("memory://", broker=broker)
    listener = SlowListener(bus)
    service = asyncio.create_task(run_service(bus, listener, drain_timeout=10))

    await TicketCreatedPublisher(bus).publish(ticket(1))
    async with asyncio.timeout(5):
        await listener.started.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(5):
        await listener.paused.wait()  # the signal reached the service
    assert not service.done(), "it waits for the handler in flight"

    listener.release.set()
    async with asyncio.timeout(5):
        await service
    assert listener.finished == ["t1"]
    assert bus.closed
    assert not listener.listening
    assert broker.has_durable("ticket:created", "orders-service", "orders-service")

    # The next start resumes after what was acknowledged.
    async with await connect("memory://", broker=broker) as again:
        await TicketCreatedPublisher(again).publish(ticket(2))
        resumed = SlowListener(again)
        resumed.release.set()
        await resumed.listen()
        async with asyncio.timeout(5):
            await resumed.done.wait()
        assert resumed.finished == ["t2"]


async def test_a_stuck_handler_does_not_hold_shutdown_forever() -> None:
    broker = MemoryBroker()
    bus = await connect("memory://", broker=broker)
    listener = SlowListener(bus)
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(bus, listener, drain_timeout=0.2, stop=stop))
    await TicketCreatedPublisher(bus).publish(ticket(1))
    async with asyncio.timeout(5):
        await listener.started.wait()
    stop.set()
    async with asyncio.timeout(5):
        await service
    assert bus.closed
    assert listener.finished == []
    # Not acknowledged: the next instance gets it.
    async with await connect("memory://", broker=broker) as again:
        assert isinstance(again.transport, MemoryTransport)
        resumed = SlowListener(again)
        resumed.release.set()
        await resumed.listen()
        async with asyncio.timeout(5):
            await resumed.done.wait()
        assert resumed.finished == ["t1"]


async def test_shutdown_timeout_still_works_with_a_deprecation_warning() -> None:
    bus = await connect("memory://")
    listener = SlowListener(bus)
    stop = asyncio.Event()
    await TicketCreatedPublisher(bus).publish(ticket(1))
    stop_when_started = asyncio.create_task(_set_when(listener.started, stop))
    with pytest.warns(
        DeprecationWarning, match="shutdown_timeout= is deprecated; use drain_timeout="
    ) as caught:
        async with asyncio.timeout(5):
            await run_service(bus, listener, shutdown_timeout=0.2, stop=stop)
    assert caught[0].filename == __file__  # the warning points at the caller
    await stop_when_started
    assert bus.closed
    assert listener.finished == []  # the stuck handler was given 0.2 s, not 10


async def _set_when(happened: asyncio.Event, then: asyncio.Event) -> None:
    await happened.wait()
    then.set()


class RecordingCompanion:
    """A companion that records what it saw of the service at each step."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name = name
        self.journal = journal

    async def start(self, service: RunningService) -> None:
        listening = [listener.listening for listener in service.listeners]
        self.journal.append(f"{self.name} start (listening={listening})")
        self.service = service

    async def close(self) -> None:
        self.journal.append(
            f"{self.name} close (draining={self.service.draining}, "
            f"bus closed={self.service.bus.closed})"
        )


async def test_companions_start_before_the_listeners_and_close_after_the_drain() -> None:
    bus = await connect("memory://")
    listener = SlowListener(bus)
    journal: list[str] = []
    first, second = RecordingCompanion("first", journal), RecordingCompanion("second", journal)
    assert isinstance(first, ServiceCompanion)
    stop = asyncio.Event()
    service = asyncio.create_task(
        run_service(bus, listener, stop=stop, signals=(), companions=[first, second])
    )
    await TicketCreatedPublisher(bus).publish(ticket(1))
    await asyncio.wait_for(listener.started.wait(), 5)
    assert first.service.started and not first.service.draining

    stop.set()
    await asyncio.wait_for(listener.paused.wait(), 5)
    assert first.service.draining
    listener.release.set()
    await asyncio.wait_for(service, 10)

    assert journal == [
        "first start (listening=[False])",
        "second start (listening=[False])",
        "second close (draining=True, bus closed=False)",
        "first close (draining=True, bus closed=False)",
    ]
    assert listener.finished == ["t1"]
