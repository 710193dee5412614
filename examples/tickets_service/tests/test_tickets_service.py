from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from common_events import (
    Bus,
    CancelledOrderTicket,
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
from common_events.testing import PublishedEvents, deliver, memory_broker

from tickets_service import TicketNotFound, TicketReserved, Tickets, TicketStore
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
def store() -> Iterator[TicketStore]:
    store = TicketStore()
    yield store
    store.close()


@pytest.fixture
def tickets(store: TicketStore, event_bus: Bus) -> Tickets:
    return Tickets(store, event_bus)


# -- what the service publishes ------------------------------------------------------


async def test_a_new_ticket_is_published_at_version_0(
    tickets: Tickets, event_bus: Bus, assert_published: Callable[..., Any]
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")

    assert_published(TicketCreatedEvent, id=ticket.id, version=0, title="Concert", price=20)
    # Byte for byte what the Node services write: camelCase, no envelope, 20 not 20.0.
    (message,) = memory_broker(event_bus).messages("ticket:created")
    assert json.loads(message.data) == {
        "id": ticket.id,
        "version": 0,
        "title": "Concert",
        "price": 20,
        "userId": "seller",
    }
    assert (
        message.data
        == (
            f'{{"id":"{ticket.id}","version":0,"title":"Concert","price":20,"userId":"seller"}}'
        ).encode()
    )


async def test_each_edit_is_published_with_the_next_version(
    tickets: Tickets, published: PublishedEvents
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    await tickets.edit(ticket.id, title="Concert (matinee)", price=15)
    await tickets.edit(ticket.id, title="Concert (matinee)", price=12.5)

    updates = published.events(TicketUpdatedEvent, id=ticket.id)
    assert [(u.version, u.price, u.order_id) for u in updates] == [(1, 15, None), (2, 12.5, None)]


async def test_editing_an_unknown_ticket_publishes_nothing(
    tickets: Tickets, published: PublishedEvents
) -> None:
    with pytest.raises(TicketNotFound):
        await tickets.edit("nope", title="x", price=1)
    published.assert_not_published(TicketUpdatedEvent)


# -- the listeners -------------------------------------------------------------------


async def test_an_order_reserves_the_ticket_once(
    event_bus: Bus,
    tickets: Tickets,
    store: TicketStore,
    published: PublishedEvents,
    assert_published: Callable[..., Any],
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    listener = OrderCreatedListener(event_bus, tickets)

    delivery = await deliver(listener, order_created("o1", ticket.id))

    assert delivery.acked, str(delivery)
    assert store.get(ticket.id).order_id == "o1"
    assert_published(TicketUpdatedEvent, id=ticket.id, version=1, order_id="o1")
    with pytest.raises(TicketReserved):
        await tickets.edit(ticket.id, title="Cheaper", price=1)

    # The same order event again (at-least-once): the ticket is not bumped to version
    # 2; its current state is published again, which the other services ignore.
    again = await deliver(listener, order_created("o1", ticket.id), delivery_count=2)
    assert again.acked
    assert store.get(ticket.id).version == 1
    versions = [u.version for u in published.events(TicketUpdatedEvent, id=ticket.id)]
    assert versions == [1, 1]


async def test_an_order_for_an_unknown_ticket_is_retried(
    event_bus: Bus, tickets: Tickets, published: PublishedEvents
) -> None:
    delivery = await deliver(OrderCreatedListener(event_bus, tickets), order_created("o1", "nope"))

    assert delivery.not_acked
    assert isinstance(delivery.error, TicketNotFound)
    published.assert_not_published(TicketUpdatedEvent)


async def test_a_cancelled_order_frees_the_ticket(
    event_bus: Bus, tickets: Tickets, store: TicketStore, assert_published: Callable[..., Any]
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    assert (
        await deliver(OrderCreatedListener(event_bus, tickets), order_created("o1", ticket.id))
    ).acked

    delivery = await deliver(
        OrderCancelledListener(event_bus, tickets), order_cancelled("o1", ticket.id)
    )

    assert delivery.acked
    assert store.get(ticket.id).order_id is None
    freed = assert_published(TicketUpdatedEvent, id=ticket.id, version=2)
    assert freed.order_id is None
    await tickets.edit(ticket.id, title="Concert", price=18)


async def test_a_late_cancellation_does_not_free_another_orders_ticket(
    event_bus: Bus, tickets: Tickets, store: TicketStore, published: PublishedEvents
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    await tickets.reserve(ticket.id, order_id="o2")

    delivery = await deliver(
        OrderCancelledListener(event_bus, tickets), order_cancelled("o1", ticket.id)
    )

    assert delivery.acked
    assert store.get(ticket.id).order_id == "o2"
    assert [u.version for u in published.events(TicketUpdatedEvent)] == [1]


# -- the entry point -----------------------------------------------------------------


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


class TicketUpdates(Listener[TicketUpdatedEvent]):
    """What another service (orders) hears from this one."""

    queue_group = "test-observer"

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.received: asyncio.Queue[TicketUpdatedEvent] = asyncio.Queue()

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        self.received.put_nowait(event)
        await msg.ack()


async def test_the_entry_point_handles_orders_until_stopped(tmp_path: Path, event_bus: Bus) -> None:
    database = tmp_path / "tickets.sqlite3"
    seeded = TicketStore(str(database))
    ticket = seeded.create(title="Concert", price=20, user_id="seller")
    updates = TicketUpdates(event_bus)
    await updates.listen()
    stop = asyncio.Event()
    service = asyncio.create_task(
        main("memory://", str(database), stop=stop, broker=memory_broker(event_bus))
    )
    try:
        await OrderCreatedPublisher(event_bus).publish(order_created("o1", ticket.id))
        # The service answers the order with the reserved ticket's next version.
        update = await asyncio.wait_for(updates.received.get(), WAIT)
        assert (update.id, update.version, update.order_id) == (ticket.id, 1, "o1")
        assert seeded.get(ticket.id).order_id == "o1"
    finally:
        stop.set()
        await asyncio.wait_for(service, timeout=10)
        await updates.close()
        seeded.close()
