from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from common_events import (
    Bus,
    CancelledOrderTicket,
    Event,
    Listener,
    Message,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    OrderTicket,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.outbox import MESSAGE_ID_HEADER, Outbox, OutboxRecord, OutboxRelay
from common_events.testing import PublishedEvents, deliver, memory_broker
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from tickets_service import (
    ConcurrentUpdate,
    Ticket,
    TicketNotFound,
    TicketReserved,
    Tickets,
    create_schema,
    open_database,
)
from tickets_service.__main__ import main
from tickets_service.events import OrderCancelledListener, OrderCreatedListener

WAIT = 5.0
"""Seconds a test waits for the service to get somewhere before it fails."""


def order_created(order_id: str, ticket_id: str) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        id=order_id,
        version=0,
        status=OrderStatus.CREATED,
        user_id="buyer",
        expires_at=datetime.now(UTC) + timedelta(minutes=15),
        ticket=OrderTicket(id=ticket_id, price=20),
    )


def order_cancelled(order_id: str, ticket_id: str) -> OrderCancelledEvent:
    return OrderCancelledEvent(id=order_id, version=1, ticket=CancelledOrderTicket(id=ticket_id))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "tickets.sqlite3"


@pytest.fixture
async def engine(database: Path) -> AsyncIterator[AsyncEngine]:
    engine = open_database(str(database))
    await create_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def tickets(sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> Tickets:
    return Tickets(sessions, outbox)


@pytest.fixture
def relay(event_bus: Bus, engine: AsyncEngine, outbox: Outbox) -> OutboxRelay:
    """The service's outbox relay, not running: a test publishes what was committed so
    far with ``await relay.publish_pending()``."""
    return OutboxRelay(event_bus, engine, outbox=outbox)


async def outbox_rows(engine: AsyncEngine) -> list[OutboxRecord]:
    async with AsyncSession(engine) as session:
        return list(await session.scalars(select(OutboxRecord).order_by(OutboxRecord.id)))


async def ticket_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Ticket)) or 0)


# -- a ticket and its event: one transaction -----------------------------------------


async def test_a_ticket_and_its_event_are_committed_together(
    tickets: Tickets, engine: AsyncEngine, relay: OutboxRelay, event_bus: Bus
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")

    # Committed, not published yet: the ticket's row and its event's row are both in
    # the service's database, the event waiting for the relay.
    assert (await tickets.get(ticket.id)).version == 0
    (row,) = await outbox_rows(engine)
    assert (row.subject, row.aggregate, row.sent_at) == ("ticket:created", ticket.id, None)
    assert json.loads(row.payload) == {
        "id": ticket.id,
        "version": 0,
        "title": "Concert",
        "price": 20,
        "userId": "seller",
    }
    broker = memory_broker(event_bus)
    assert broker.messages("ticket:created") == ()

    # The relay publishes the stored bytes, with the row's id as the message id (what
    # JetStream de-duplicates and idempotent listeners key on), and marks the row sent.
    assert await relay.publish_pending() == 1
    (message,) = broker.messages("ticket:created")
    assert message.data == row.payload
    assert message.headers[MESSAGE_ID_HEADER] == row.message_id
    (sent,) = await outbox_rows(engine)
    assert sent.sent_at is not None
    assert await relay.pending() == 0
    assert await relay.publish_pending() == 0


async def test_a_ticket_whose_event_cannot_be_made_is_not_saved(
    tickets: Tickets, engine: AsyncEngine, relay: OutboxRelay, published: PublishedEvents
) -> None:
    # The event refuses a negative price after the ticket was added to the session:
    # the transaction rolls back, and there is no ticket the others never hear of.
    with pytest.raises(ValidationError, match="price"):
        await tickets.create(title="Concert", price=-1, user_id="seller")

    assert await ticket_count(engine) == 0
    assert await outbox_rows(engine) == []
    assert await relay.publish_pending() == 0
    published.assert_not_published(TicketCreatedEvent)


class AnotherReplicaEditsFirst(Outbox):
    """Stands for a second replica of the service that saves its own edit of the same
    ticket after this one read the ticket and before this one commits (its own event
    is not part of the test)."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self.database = database

    def add(self, session: Session | AsyncSession, event: Event, **options: Any) -> OutboxRecord:
        record = super().add(session, event, **options)
        if isinstance(event, TicketUpdatedEvent):
            other = sqlite3.connect(self.database)
            try:
                with other:  # one committed transaction
                    other.execute(
                        "UPDATE tickets SET price = 30, version = version + 1 WHERE id = ?",
                        (event.id,),
                    )
            finally:
                other.close()
        return record


async def test_an_edit_that_loses_a_race_is_rolled_back_with_its_event(
    tickets: Tickets,
    sessions: async_sessionmaker[AsyncSession],
    database: Path,
    engine: AsyncEngine,
    relay: OutboxRelay,
    published: PublishedEvents,
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    racing = Tickets(sessions, AnotherReplicaEditsFirst(database))

    # Its ticket:updated was added to the session; the UPDATE then finds version 1 where
    # it read version 0, and the edit and its event roll back together.
    with pytest.raises(ConcurrentUpdate):
        await racing.edit(ticket.id, title="Cheaper", price=5)

    saved = await tickets.get(ticket.id)
    assert (saved.title, saved.price, saved.version) == ("Concert", 30, 1)  # the other's
    assert [row.subject for row in await outbox_rows(engine)] == ["ticket:created"]
    assert await relay.publish_pending() == 1
    published.assert_published(TicketCreatedEvent, id=ticket.id)
    published.assert_not_published(TicketUpdatedEvent)


# -- what the service publishes ------------------------------------------------------


async def test_a_new_ticket_is_published_at_version_0(
    tickets: Tickets, relay: OutboxRelay, event_bus: Bus, assert_published: Callable[..., Any]
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    await relay.publish_pending()

    assert_published(TicketCreatedEvent, id=ticket.id, version=0, title="Concert", price=20)
    # Byte for byte what the Node services write: camelCase, no envelope, 20 not 20.0.
    (message,) = memory_broker(event_bus).messages("ticket:created")
    assert (
        message.data
        == (
            f'{{"id":"{ticket.id}","version":0,"title":"Concert","price":20,"userId":"seller"}}'
        ).encode()
    )


async def test_each_edit_is_published_with_the_next_version_in_order(
    tickets: Tickets, relay: OutboxRelay, published: PublishedEvents
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    await tickets.edit(ticket.id, title="Concert (matinee)", price=15)
    await tickets.edit(ticket.id, title="Concert (matinee)", price=12.5)

    assert await relay.publish_pending() == 3
    published.assert_published(TicketCreatedEvent, id=ticket.id, version=0)
    updates = published.events(TicketUpdatedEvent, id=ticket.id)
    assert [(u.version, u.price, u.order_id) for u in updates] == [(1, 15, None), (2, 12.5, None)]


async def test_editing_an_unknown_ticket_publishes_nothing(
    tickets: Tickets, engine: AsyncEngine, relay: OutboxRelay, published: PublishedEvents
) -> None:
    with pytest.raises(TicketNotFound):
        await tickets.edit("nope", title="x", price=1)
    assert await outbox_rows(engine) == []
    assert await relay.publish_pending() == 0
    published.assert_not_published(TicketUpdatedEvent)


# -- the listeners -------------------------------------------------------------------


async def test_an_order_reserves_the_ticket_once(
    event_bus: Bus,
    tickets: Tickets,
    relay: OutboxRelay,
    published: PublishedEvents,
    assert_published: Callable[..., Any],
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    listener = OrderCreatedListener(event_bus, tickets)

    delivery = await deliver(listener, order_created("o1", ticket.id))

    assert delivery.acked, str(delivery)
    assert (await tickets.get(ticket.id)).order_id == "o1"
    assert await relay.publish_pending() == 2
    assert_published(TicketUpdatedEvent, id=ticket.id, version=1, order_id="o1")
    with pytest.raises(TicketReserved):
        await tickets.edit(ticket.id, title="Cheaper", price=1)

    # The same order event again (at-least-once): the reservation and its event were
    # committed with the first delivery, so the ticket is not bumped to version 2 and
    # nothing more is published.
    again = await deliver(listener, order_created("o1", ticket.id), delivery_count=2)
    assert again.acked
    assert (await tickets.get(ticket.id)).version == 1
    assert await relay.publish_pending() == 0
    assert [u.version for u in published.events(TicketUpdatedEvent, id=ticket.id)] == [1]


async def test_an_order_for_an_unknown_ticket_is_retried(
    event_bus: Bus,
    tickets: Tickets,
    engine: AsyncEngine,
    relay: OutboxRelay,
    published: PublishedEvents,
) -> None:
    delivery = await deliver(OrderCreatedListener(event_bus, tickets), order_created("o1", "nope"))

    assert delivery.not_acked
    assert isinstance(delivery.error, TicketNotFound)
    assert await outbox_rows(engine) == []
    assert await relay.publish_pending() == 0
    published.assert_not_published(TicketUpdatedEvent)


async def test_a_cancelled_order_frees_the_ticket(
    event_bus: Bus, tickets: Tickets, relay: OutboxRelay, assert_published: Callable[..., Any]
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    assert (
        await deliver(OrderCreatedListener(event_bus, tickets), order_created("o1", ticket.id))
    ).acked

    delivery = await deliver(
        OrderCancelledListener(event_bus, tickets), order_cancelled("o1", ticket.id)
    )

    assert delivery.acked
    assert (await tickets.get(ticket.id)).order_id is None
    assert await relay.publish_pending() == 3
    freed = assert_published(TicketUpdatedEvent, id=ticket.id, version=2)
    assert freed.order_id is None
    await tickets.edit(ticket.id, title="Concert", price=18)


async def test_a_late_cancellation_does_not_free_another_orders_ticket(
    event_bus: Bus, tickets: Tickets, relay: OutboxRelay, published: PublishedEvents
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    await tickets.reserve(ticket.id, order_id="o2")

    delivery = await deliver(
        OrderCancelledListener(event_bus, tickets), order_cancelled("o1", ticket.id)
    )

    assert delivery.acked
    assert (await tickets.get(ticket.id)).order_id == "o2"
    await relay.publish_pending()
    assert [u.version for u in published.events(TicketUpdatedEvent)] == [1]


# -- the entry point -----------------------------------------------------------------


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


E = TypeVar("E", bound=Event)


class Observer(Listener[E]):
    """What another service (orders) hears from this one."""

    queue_group = "test-observer"

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.received: asyncio.Queue[E] = asyncio.Queue()

    async def on_message(self, event: E, msg: Message) -> None:
        self.received.put_nowait(event)
        await msg.ack()


class TicketCreations(Observer[TicketCreatedEvent]):
    pass


class TicketUpdates(Observer[TicketUpdatedEvent]):
    pass


async def test_the_entry_point_publishes_what_was_committed_and_handles_orders(
    database: Path, tickets: Tickets, engine: AsyncEngine, event_bus: Bus
) -> None:
    # A ticket committed while the service was not running (as if it died between the
    # commit and the publish): its event waits in the outbox.
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    creations, updates = TicketCreations(event_bus), TicketUpdates(event_bus)
    await creations.listen()
    await updates.listen()
    stop = asyncio.Event()
    service = asyncio.create_task(
        main("memory://", str(database), stop=stop, broker=memory_broker(event_bus))
    )
    try:
        # The service's relay publishes it once the service runs.
        created = await asyncio.wait_for(creations.received.get(), WAIT)
        assert (created.id, created.version) == (ticket.id, 0)

        await OrderCreatedPublisher(event_bus).publish(order_created("o1", ticket.id))
        # The service answers the order with the reserved ticket's next version.
        update = await asyncio.wait_for(updates.received.get(), WAIT)
        assert (update.id, update.version, update.order_id) == (ticket.id, 1, "o1")
        assert (await tickets.get(ticket.id)).order_id == "o1"
    finally:
        stop.set()
        await asyncio.wait_for(service, timeout=10)
        await creations.close()
        await updates.close()
    # Both events were marked sent before the service stopped.
    rows = await outbox_rows(engine)
    assert [(row.subject, row.sent_at is not None) for row in rows] == [
        ("ticket:created", True),
        ("ticket:updated", True),
    ]
