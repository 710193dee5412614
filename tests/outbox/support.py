"""What the outbox tests share: a ticket table, events, and listeners that count."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common_events import (
    Bus,
    Listener,
    Message,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.outbox import MESSAGE_ID_HEADER


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Until ``predicate()`` holds, checked every few milliseconds, at most ``timeout``."""
    # The relay's state has no event to wait on (health checks read it): poll it.
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    assert predicate(), what


class ServiceBase(DeclarativeBase):
    """The service's own models, apart from the outbox's."""


class Ticket(ServiceBase):
    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    price: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=0)


async def create_service_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(ServiceBase.metadata.create_all)


def ticket_event(
    ticket_id: str, version: int = 0, *, price: int = 10
) -> TicketCreatedEvent | TicketUpdatedEvent:
    """Version 0 is ``ticket:created``, later versions ``ticket:updated``."""
    fields: dict[str, Any] = {
        "id": ticket_id,
        "version": version,
        "title": f"ticket {ticket_id}",
        "price": price,
        "user_id": "user-1",
    }
    if version == 0:
        return TicketCreatedEvent(**fields)
    return TicketUpdatedEvent(**fields)


@dataclass(frozen=True)
class Delivery:
    subject: str
    message_id: str | None
    ticket_id: str
    version: int
    sequence: int
    price: float


class Received:
    """Every delivery the recording listeners saw, and a way to wait for them."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._changed = asyncio.Event()

    def add(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float) -> None:
        """Until ``count`` stored messages arrived; ``TimeoutError`` says how many did."""
        try:
            async with asyncio.timeout(timeout):
                while self.stored() < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{self.stored()} of {count} messages within {timeout}s") from None

    def events(self) -> Counter[tuple[str, int]]:
        """How many times each event (ticket id, version) was stored by the broker: its
        distinct broker sequences. A redelivery of one stored message (its ack was lost)
        is the listener side's at-least-once, not a second publication."""
        stored = {(d.subject, d.sequence): (d.ticket_id, d.version) for d in self.deliveries}
        return Counter(stored.values())

    def message_ids(self) -> Counter[str | None]:
        """How many stored messages carry each ``Nats-Msg-Id``."""
        stored = {(d.subject, d.sequence): d.message_id for d in self.deliveries}
        return Counter(stored.values())

    def stored(self) -> int:
        return len({(d.subject, d.sequence) for d in self.deliveries})


class _Recording:
    queue_group = "recorder"
    ack_wait = 5.0

    def __init__(self, bus: Bus, received: Received) -> None:
        super().__init__(bus)  # type: ignore[call-arg]
        self.received = received

    async def on_message(
        self, event: TicketCreatedEvent | TicketUpdatedEvent, msg: Message
    ) -> None:
        self.received.add(
            Delivery(
                subject=msg.subject,
                message_id=msg.headers.get(MESSAGE_ID_HEADER),
                ticket_id=event.id,
                version=event.version,
                sequence=msg.sequence,
                price=float(event.price),
            )
        )
        await msg.ack()


class TicketCreatedRecorder(_Recording, Listener[TicketCreatedEvent]):
    queue_group = "recorder"


class TicketUpdatedRecorder(_Recording, Listener[TicketUpdatedEvent]):
    queue_group = "recorder"


async def record_tickets(bus: Bus, received: Received) -> list[Listener[Any]]:
    """Listen to ``ticket:created`` and ``ticket:updated``; returns the listeners."""
    listeners: list[Listener[Any]] = [
        TicketCreatedRecorder(bus, received),
        TicketUpdatedRecorder(bus, received),
    ]
    for listener in listeners:
        await listener.listen()
    return listeners


async def close_all(listeners: list[Listener[Any]]) -> None:
    for listener in listeners:
        await listener.close()
