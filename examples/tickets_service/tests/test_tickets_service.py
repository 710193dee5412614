from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

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
    TicketUpdatedEvent,
    connect,
)
from common_events.transports.memory import MemoryBroker

from tickets_service import TicketReserved, Tickets, TicketStore
from tickets_service.__main__ import main
from tickets_service.events import OrderCancelledListener, OrderCreatedListener


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


class OrderCancelledPublisher(Publisher[OrderCancelledEvent]):
    pass


class TicketUpdates(Listener[TicketUpdatedEvent]):
    """What another service (orders) would hear from this one."""

    queue_group = "test-observer"

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.received: asyncio.Queue[TicketUpdatedEvent] = asyncio.Queue()

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        self.received.put_nowait(event)
        await msg.ack()


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


L = TypeVar("L", bound=Listener[Any])

WAIT = 5.0
"""Seconds a test waits for the service to get somewhere before it fails."""


class Handled:
    """Wakes a waiting test each time an observed listener has handled a delivery,
    so tests wait for the service's state to change instead of sleeping."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()

    def observe(self, listener: L) -> L:
        handle = listener.on_message

        async def on_message(event: Any, msg: Message) -> None:
            try:
                await handle(event, msg)
            finally:
                async with self._changed:
                    self._changed.notify_all()

        listener.on_message = on_message  # type: ignore[method-assign]
        return listener

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(condition)


@pytest.fixture
def store() -> Iterator[TicketStore]:
    store = TicketStore()
    yield store
    store.close()


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker()


@pytest.fixture
async def bus(broker: MemoryBroker) -> AsyncIterator[Bus]:
    async with await connect("memory://", broker=broker) as bus:
        yield bus


@pytest.fixture
def tickets(store: TicketStore, bus: Bus) -> Tickets:
    return Tickets(store, bus)


def published(broker: MemoryBroker, subject: str) -> list[dict[str, object]]:
    return [json.loads(message.data) for message in broker.messages(subject)]


async def test_a_new_ticket_is_published_at_version_0(
    tickets: Tickets, broker: MemoryBroker
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")

    assert published(broker, "ticket:created") == [
        {"id": ticket.id, "version": 0, "title": "Concert", "price": 20, "userId": "seller"}
    ]


async def test_each_edit_is_published_with_the_next_version(
    tickets: Tickets, broker: MemoryBroker
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    await tickets.edit(ticket.id, title="Concert (matinee)", price=15)
    await tickets.edit(ticket.id, title="Concert (matinee)", price=12.5)

    assert published(broker, "ticket:updated") == [
        {
            "id": ticket.id,
            "version": 1,
            "title": "Concert (matinee)",
            "price": 15,
            "userId": "seller",
        },
        {
            "id": ticket.id,
            "version": 2,
            "title": "Concert (matinee)",
            "price": 12.5,
            "userId": "seller",
        },
    ]


async def test_an_order_reserves_the_ticket_once(
    bus: Bus, broker: MemoryBroker, tickets: Tickets, store: TicketStore
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    handled = Handled()
    await handled.observe(OrderCreatedListener(bus, tickets)).listen()

    await OrderCreatedPublisher(bus).publish(order_created("o1", ticket.id))
    await handled.until(lambda: len(broker.messages("ticket:updated")) == 1)

    assert store.get(ticket.id).order_id == "o1"
    assert published(broker, "ticket:updated")[0]["orderId"] == "o1"
    assert published(broker, "ticket:updated")[0]["version"] == 1
    with pytest.raises(TicketReserved):
        await tickets.edit(ticket.id, title="Cheaper", price=1)

    # The same order event again (at-least-once): the ticket is not bumped to version
    # 2; its current state is published again, which the replicas ignore.
    await tickets.reserve(ticket.id, order_id="o1")
    assert store.get(ticket.id).version == 1
    assert [p["version"] for p in published(broker, "ticket:updated")] == [1, 1]


async def test_a_cancelled_order_frees_the_ticket(
    bus: Bus, broker: MemoryBroker, tickets: Tickets, store: TicketStore
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    handled = Handled()
    await handled.observe(OrderCreatedListener(bus, tickets)).listen()
    await handled.observe(OrderCancelledListener(bus, tickets)).listen()

    await OrderCreatedPublisher(bus).publish(order_created("o1", ticket.id))
    await handled.until(lambda: store.get(ticket.id).order_id == "o1")
    await OrderCancelledPublisher(bus).publish(order_cancelled("o1", ticket.id))
    await handled.until(lambda: store.get(ticket.id).version == 2)

    last = published(broker, "ticket:updated")[-1]
    assert last == {
        "id": ticket.id,
        "version": 2,
        "title": "Concert",
        "price": 20,
        "userId": "seller",
    }
    await tickets.edit(ticket.id, title="Concert", price=18)


async def test_a_late_cancellation_does_not_free_another_orders_ticket(
    tickets: Tickets, store: TicketStore
) -> None:
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    await tickets.reserve(ticket.id, order_id="o2")

    await tickets.release(ticket.id, order_id="o1")

    assert store.get(ticket.id).order_id == "o2"
    assert store.get(ticket.id).version == 1


async def test_the_entry_point_handles_orders_until_stopped(
    tmp_path: Path, bus: Bus, broker: MemoryBroker
) -> None:
    database = tmp_path / "tickets.sqlite3"
    seeded = TicketStore(str(database))
    ticket = seeded.create(title="Concert", price=20, user_id="seller")
    updates = TicketUpdates(bus)
    await updates.listen()
    stop = asyncio.Event()
    service = asyncio.create_task(main("memory://", str(database), stop=stop, broker=broker))
    try:
        await OrderCreatedPublisher(bus).publish(order_created("o1", ticket.id))
        # The service answers the order with the reserved ticket's new version.
        update = await asyncio.wait_for(updates.received.get(), WAIT)
        assert (update.id, update.version, update.order_id) == (ticket.id, 1, "o1")
        assert seeded.get(ticket.id).order_id == "o1"
    finally:
        stop.set()
        await asyncio.wait_for(service, timeout=10)
        seeded.close()
