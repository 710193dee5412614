from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from common_events import (
    Bus,
    DeadLetterReason,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    OutOfOrder,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.events import to_iso_string
from common_events.testing import deliver, memory_broker

from orders_service import Orders, Store, TicketAlreadyReserved, TicketNotFound
from orders_service.__main__ import main
from orders_service.events import TicketCreatedListener, TicketUpdatedListener

CREATED = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")

WAIT = 5.0
"""Seconds a test waits for the service to get somewhere before it fails."""


def updated(version: int, title: str, price: float = 20) -> TicketUpdatedEvent:
    return TicketUpdatedEvent(id="t1", version=version, title=title, price=price, user_id="u1")


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class TicketUpdatedPublisher(Publisher[TicketUpdatedEvent]):
    pass


@pytest.fixture
def store() -> Iterator[Store]:
    store = Store()
    yield store
    store.close()


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


# -- the listeners -------------------------------------------------------------------


async def test_a_created_ticket_is_copied_and_acknowledged(event_bus: Bus, store: Store) -> None:
    delivery = await deliver(TicketCreatedListener(event_bus, store), CREATED)

    assert delivery.acked
    assert store.get_ticket("t1").title == "Concert"


async def test_a_version_that_arrives_early_is_left_for_later(event_bus: Bus, store: Store) -> None:
    listener = TicketUpdatedListener(event_bus, store)
    store.add_ticket(CREATED)

    # Version 2 before version 1: not acknowledged, so the broker delivers it again.
    early = await deliver(listener, updated(2, "Late show", price=25))
    assert early.not_acked, str(early)
    assert isinstance(early.error, OutOfOrder)
    assert early.retry_delay == listener.retry_delay

    assert (await deliver(listener, updated(1, "Matinee"))).acked
    again = await deliver(listener, updated(2, "Late show", price=25), delivery_count=2)
    assert again.acked, str(again)
    ticket = store.get_ticket("t1")
    assert (ticket.title, ticket.price, ticket.version) == ("Late show", 25, 2)


async def test_a_redelivered_update_is_acknowledged_without_change(
    event_bus: Bus, store: Store
) -> None:
    listener = TicketUpdatedListener(event_bus, store)
    store.add_ticket(CREATED)
    assert (await deliver(listener, updated(1, "Matinee"))).acked
    assert (await deliver(listener, updated(2, "Late show"))).acked

    assert (await deliver(listener, updated(1, "Matinee"), delivery_count=2)).acked
    assert store.get_ticket("t1").title == "Late show"


async def test_an_update_that_never_fits_ends_on_the_dead_letter_subject(
    event_bus: Bus, store: Store
) -> None:
    listener = TicketUpdatedListener(event_bus, store)

    last_try = await deliver(
        listener, updated(5, "From nowhere"), delivery_count=listener.max_deliveries
    )

    assert last_try.dead_lettered, str(last_try)
    assert last_try.dead_letter is not None
    assert last_try.dead_letter.reason is DeadLetterReason.MAX_DELIVERIES
    assert "OutOfOrder" in last_try.dead_letter.error
    assert store.find_ticket("t1") is None


async def test_an_invalid_ticket_event_is_dead_lettered(event_bus: Bus, store: Store) -> None:
    delivery = await deliver(
        TicketUpdatedListener(event_bus, store),
        {"id": "t1", "version": "2", "title": "Late show", "price": 25, "userId": "u1"},
    )

    assert delivery.dead_lettered
    assert delivery.dead_letter is not None
    assert delivery.dead_letter.reason is DeadLetterReason.INVALID_EVENT


# -- orders --------------------------------------------------------------------------


async def test_an_order_reserves_its_ticket_and_says_so(
    event_bus: Bus, store: Store, assert_published: Callable[..., Any]
) -> None:
    store.add_ticket(CREATED)
    orders = Orders(store, event_bus)

    order = await orders.create(ticket_id="t1", user_id="buyer")

    event = assert_published(
        OrderCreatedEvent,
        id=order.id,
        version=0,
        status=OrderStatus.CREATED,
        user_id="buyer",
        ticket={"id": "t1", "price": 20},
    )
    # The wire carries milliseconds.
    assert abs(event.expires_at - order.expires_at) < timedelta(milliseconds=1)
    with pytest.raises(TicketAlreadyReserved):
        await orders.create(ticket_id="t1", user_id="someone else")


async def test_the_order_event_is_the_wire_json_the_node_services_read(
    event_bus: Bus, store: Store
) -> None:
    store.add_ticket(CREATED)
    order = await Orders(store, event_bus).create(ticket_id="t1", user_id="buyer")

    (message,) = memory_broker(event_bus).messages("order:created")
    payload = json.loads(message.data)
    assert list(payload) == ["id", "version", "status", "userId", "expiresAt", "ticket"]
    assert payload == {
        "id": order.id,
        "version": 0,
        "status": "created",
        "userId": "buyer",
        "expiresAt": to_iso_string(order.expires_at),  # 2026-11-27T06:40:00.000Z
        "ticket": {"id": "t1", "price": 20},
    }


async def test_a_cancelled_order_frees_its_ticket(
    event_bus: Bus, store: Store, assert_published: Callable[..., Any]
) -> None:
    store.add_ticket(CREATED)
    orders = Orders(store, event_bus)
    order = await orders.create(ticket_id="t1", user_id="buyer")

    cancelled = await orders.cancel(order.id)

    assert cancelled.status is OrderStatus.CANCELLED
    assert_published(OrderCancelledEvent, id=order.id, version=1, ticket={"id": "t1"})
    second = await orders.create(ticket_id="t1", user_id="someone else")
    assert second.id != order.id


async def test_an_order_needs_the_ticket_copied_first(event_bus: Bus, store: Store) -> None:
    with pytest.raises(TicketNotFound):
        await Orders(store, event_bus).create(ticket_id="t1", user_id="buyer")


# -- the entry point -----------------------------------------------------------------


async def test_the_entry_point_copies_tickets_until_stopped(tmp_path: Path, event_bus: Bus) -> None:
    database = tmp_path / "orders.sqlite3"
    stop = asyncio.Event()
    service = asyncio.create_task(
        main("memory://", str(database), stop=stop, broker=memory_broker(event_bus))
    )
    try:
        await TicketCreatedPublisher(event_bus).publish(CREATED)
        await TicketUpdatedPublisher(event_bus).publish(updated(1, "Matinee"))
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
