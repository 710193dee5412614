from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from common_events import (
    Bus,
    DeadLetter,
    DeadLetterReason,
    Listener,
    Message,
    OutOfOrder,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
    connect,
    dead_letter_subject,
)
from common_events.transports.memory import MemoryBroker

from orders_service import Orders, Store, TicketAlreadyReserved, TicketNotFound
from orders_service.__main__ import main
from orders_service.events import TicketCreatedListener, TicketUpdatedListener

CREATED = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")


def updated(version: int, title: str, price: float = 20) -> TicketUpdatedEvent:
    return TicketUpdatedEvent(id="t1", version=version, title=title, price=price, user_id="u1")


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class TicketUpdatedPublisher(Publisher[TicketUpdatedEvent]):
    pass


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
def store() -> Iterator[Store]:
    store = Store()
    yield store
    store.close()


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker()


@pytest.fixture
async def bus(broker: MemoryBroker) -> AsyncIterator[Bus]:
    async with await connect("memory://", broker=broker) as bus:
        yield bus


def published(broker: MemoryBroker, subject: str) -> list[dict[str, object]]:
    return [json.loads(message.data) for message in broker.messages(subject)]


# -- the ticket copy, version by version ---------------------------------------------


def test_updates_apply_only_on_top_of_the_version_before(store: Store) -> None:
    assert store.add_ticket(CREATED)
    with pytest.raises(OutOfOrder, match="needs version 1 first; have version 0"):
        store.apply_ticket_update(updated(2, "Concert (late show)"))
    assert store.get_ticket("t1").version == 0

    assert store.apply_ticket_update(updated(1, "Concert (matinee)"))
    assert store.apply_ticket_update(updated(2, "Concert (late show)", price=25))
    ticket = store.get_ticket("t1")
    assert (ticket.title, ticket.price, ticket.version) == ("Concert (late show)", 25, 2)


def test_a_redelivered_event_changes_nothing(store: Store) -> None:
    assert store.add_ticket(CREATED)
    assert not store.add_ticket(CREATED.model_copy(update={"title": "Other"}))
    assert store.apply_ticket_update(updated(1, "Matinee"))
    assert store.apply_ticket_update(updated(2, "Late show"))
    # At-least-once delivery: version 1 again, after 2 was applied, is old news.
    assert not store.apply_ticket_update(updated(1, "Matinee"))
    assert store.get_ticket("t1").title == "Late show"


def test_an_update_of_an_unknown_ticket_is_out_of_order(store: Store) -> None:
    with pytest.raises(OutOfOrder, match="have nothing"):
        store.apply_ticket_update(updated(1, "Matinee"))
    with pytest.raises(TicketNotFound):
        store.get_ticket("t1")


async def test_events_arriving_out_of_order_are_applied_in_version_order(
    bus: Bus, broker: MemoryBroker, store: Store
) -> None:
    handled = Handled()
    await handled.observe(TicketCreatedListener(bus, store)).listen()
    await handled.observe(TicketUpdatedListener(bus, store)).listen()

    # Version 2 is published before version 1: the listener refuses it (OutOfOrder),
    # it comes back after the retry delay and fits once version 1 is in.
    await TicketCreatedPublisher(bus).publish(CREATED)
    await handled.until(lambda: store.find_ticket("t1") is not None)
    await TicketUpdatedPublisher(bus).publish(updated(2, "Late show", price=25))
    await TicketUpdatedPublisher(bus).publish(updated(1, "Matinee"))

    await handled.until(lambda: store.get_ticket("t1").version == 2)
    ticket = store.get_ticket("t1")
    assert (ticket.title, ticket.price) == ("Late show", 25)
    assert published(broker, dead_letter_subject("ticket:updated")) == []


class ImpatientTicketUpdatedListener(TicketUpdatedListener):
    max_deliveries = 3
    retry_delay = 0.01


async def test_an_update_that_never_fits_ends_on_the_dead_letter_subject(
    bus: Bus, broker: MemoryBroker, store: Store
) -> None:
    handled = Handled()
    listener = handled.observe(ImpatientTicketUpdatedListener(bus, store))
    await listener.listen()
    await TicketUpdatedPublisher(bus).publish(updated(5, "From nowhere"))

    # The third failure is dead-lettered right after the handler returns.
    subject = dead_letter_subject("ticket:updated")
    await handled.until(lambda: listener.in_flight == 0 and len(broker.messages(subject)) == 1)
    record = DeadLetter.model_validate_json(broker.messages(subject)[0].data)
    assert record.reason is DeadLetterReason.MAX_DELIVERIES
    assert record.delivery_count == 3
    assert "OutOfOrder" in record.error
    assert TicketUpdatedEvent.model_validate_json(record.original_payload()).version == 5
    assert store.find_ticket("t1") is None


# -- orders --------------------------------------------------------------------------


async def test_an_order_reserves_its_ticket_and_says_so(
    bus: Bus, broker: MemoryBroker, store: Store
) -> None:
    store.add_ticket(CREATED)
    orders = Orders(store, bus)

    order = await orders.create(ticket_id="t1", user_id="buyer")

    (payload,) = published(broker, "order:created")
    assert payload == {
        "id": order.id,
        "version": 0,
        "status": "created",
        "userId": "buyer",
        "expiresAt": payload["expiresAt"],
        "ticket": {"id": "t1", "price": 20},
    }
    assert isinstance(payload["expiresAt"], str) and payload["expiresAt"].endswith("Z")
    with pytest.raises(TicketAlreadyReserved):
        await orders.create(ticket_id="t1", user_id="someone else")
    assert len(published(broker, "order:created")) == 1


async def test_a_cancelled_order_frees_its_ticket(
    bus: Bus, broker: MemoryBroker, store: Store
) -> None:
    store.add_ticket(CREATED)
    orders = Orders(store, bus)
    order = await orders.create(ticket_id="t1", user_id="buyer")

    cancelled = await orders.cancel(order.id)

    assert cancelled.version == 1
    assert published(broker, "order:cancelled") == [
        {"id": order.id, "version": 1, "ticket": {"id": "t1"}}
    ]
    second = await orders.create(ticket_id="t1", user_id="someone else")
    assert second.id != order.id


async def test_an_order_needs_the_ticket_copied_first(bus: Bus, store: Store) -> None:
    with pytest.raises(TicketNotFound):
        await Orders(store, bus).create(ticket_id="t1", user_id="buyer")


# -- the entry point -----------------------------------------------------------------


async def test_the_entry_point_copies_tickets_until_stopped(
    tmp_path: Path, bus: Bus, broker: MemoryBroker
) -> None:
    database = tmp_path / "orders.sqlite3"
    stop = asyncio.Event()
    service = asyncio.create_task(main("memory://", str(database), stop=stop, broker=broker))
    try:
        await TicketCreatedPublisher(bus).publish(CREATED)
        await TicketUpdatedPublisher(bus).publish(updated(1, "Matinee"))
        # Another connection to the service's database file sees what it committed. The
        # service's listeners are its own, so the file is the only thing to watch: poll
        # it, within a deadline.
        reader = Store(str(database))
        try:
            async with asyncio.timeout(WAIT):
                while getattr(reader.find_ticket("t1"), "version", None) != 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        finally:
            reader.close()
    finally:
        stop.set()
        await asyncio.wait_for(service, timeout=10)
