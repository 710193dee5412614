"""A durable orders-service listener that records what it processed, for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from common_events import Bus, Listener, Message, Publisher, TicketCreatedEvent


@dataclass(frozen=True, slots=True)
class Processed:
    ticket_id: str
    delivery_count: int
    sequence: int


class ProcessedLog:
    """What every member of a listener group processed, with waiting by condition."""

    def __init__(self) -> None:
        self.entries: list[Processed] = []
        self._changed = asyncio.Condition()

    async def add(self, entry: Processed) -> None:
        async with self._changed:
            self.entries.append(entry)
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def ids(self) -> set[str]:
        return {entry.ticket_id for entry in self.entries}

    async def wait_for_ids(self, expected: set[str], timeout: float) -> None:
        await self.wait_until(lambda: expected <= self.ids(), timeout)

    def unexplained_duplicates(self) -> list[Processed]:
        """Second processings of one event that the listener could not see as such."""
        seen: set[str] = set()
        bad: list[Processed] = []
        for entry in self.entries:
            if entry.ticket_id in seen and entry.delivery_count == 1:
                bad.append(entry)
            seen.add(entry.ticket_id)
        return bad


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class RecordingTicketListener(Listener[TicketCreatedEvent]):
    queue_group = "orders-service"
    ack_wait = 2.0
    max_in_flight = 64

    def __init__(self, bus: Bus, sink: ProcessedLog) -> None:
        super().__init__(bus)
        self.sink = sink

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        await self.sink.add(Processed(event.id, msg.delivery_count, msg.sequence))
        await msg.ack()


def ticket(n: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(
        id=f"ticket-{n:05d}", version=0, title=f"concert {n}", price=10 + n % 90, user_id="u1"
    )
