from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from common_events import (
    Bus,
    OrderCreatedEvent,
    OrderStatus,
    OrderTicket,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.testing import PublishedEvents
from common_events.transports.memory import MemoryBroker, MemoryTransport


class TicketUpdatedPublisher(Publisher[TicketUpdatedEvent]):
    pass


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


def ticket(version: int, ticket_id: str = "t1", **changes: object) -> TicketUpdatedEvent:
    fields: dict[str, object] = {
        "id": ticket_id,
        "version": version,
        "title": "Concert",
        "price": 20,
        "user_id": "u1",
    }
    fields.update(changes)
    return TicketUpdatedEvent.model_validate(fields)


def order() -> OrderCreatedEvent:
    return OrderCreatedEvent(
        id="o1",
        version=0,
        status=OrderStatus.CREATED,
        user_id="u1",
        expires_at=datetime(2026, 11, 27, 6, 40, tzinfo=UTC),
        ticket=OrderTicket(id="t1", price=20),
    )


async def test_event_bus_is_a_fresh_memory_bus_per_test(event_bus: Bus) -> None:
    assert not event_bus.closed
    assert event_bus.url.startswith("memory://")
    assert PublishedEvents(event_bus).subjects() == {}


async def test_assert_published_returns_the_matching_event(
    event_bus: Bus, published: PublishedEvents
) -> None:
    publisher = TicketUpdatedPublisher(event_bus)
    await publisher.publish(ticket(1))
    await publisher.publish(ticket(2, price=25))

    found = published.assert_published(TicketUpdatedEvent, id="t1", version=2)

    assert found == ticket(2, price=25)
    assert published.events(TicketUpdatedEvent, id="t1") == [ticket(1), ticket(2, price=25)]
    assert published.events(TicketUpdatedEvent, version=3) == []


async def test_the_assert_published_fixture_matches_wire_names_and_nested_fields(
    event_bus: Bus, assert_published: Callable[..., Any]
) -> None:
    await OrderCreatedPublisher(event_bus).publish(order())

    found = assert_published(
        OrderCreatedEvent,
        userId="u1",
        status="created",
        ticket={"id": "t1"},
        expires_at="2026-11-27T06:40:00.000Z",
    )

    assert found == order()


async def test_failure_lists_what_was_published_with_a_diff(
    event_bus: Bus, published: PublishedEvents
) -> None:
    publisher = TicketUpdatedPublisher(event_bus)
    await publisher.publish(ticket(1))
    await publisher.publish(ticket(2, ticket_id="t2"))
    await event_bus.publish("ticket:updated", b'{"id": "t3"}')

    with pytest.raises(AssertionError) as failure:
        published.assert_published(TicketUpdatedEvent, id="t1", version=2)

    message = str(failure.value)
    assert message.splitlines() == [
        "no TicketUpdatedEvent with id='t1', version=2 was published on ticket:updated; "
        "3 message(s) were published there:",
        '  #1 TicketUpdatedEvent {"id":"t1","version":1,"title":"Concert","price":20,'
        '"userId":"u1"}',
        "       version: expected 2, got 1",
        '  #2 TicketUpdatedEvent {"id":"t2","version":2,"title":"Concert","price":20,'
        '"userId":"u1"}',
        "       id: expected 't1', got 't2'",
        "  #3 not a valid TicketUpdatedEvent: version: Field required",
    ]


async def test_failure_on_a_nested_field_names_its_path_and_wire_values(
    event_bus: Bus, published: PublishedEvents
) -> None:
    await OrderCreatedPublisher(event_bus).publish(order())

    with pytest.raises(AssertionError) as failure:
        published.assert_published(
            OrderCreatedEvent, status=OrderStatus.CANCELLED, ticket={"price": 30}
        )

    assert "status: expected 'cancelled', got 'created'" in str(failure.value)
    assert "ticket.price: expected 30, got 20.0" in str(failure.value)


async def test_failure_when_nothing_was_published_on_the_subject(
    event_bus: Bus, published: PublishedEvents
) -> None:
    await OrderCreatedPublisher(event_bus).publish(order())

    with pytest.raises(AssertionError, match="published: order:created \\(1\\)"):
        published.assert_published(TicketUpdatedEvent)


async def test_assert_not_published(event_bus: Bus, published: PublishedEvents) -> None:
    await TicketUpdatedPublisher(event_bus).publish(ticket(1))

    published.assert_not_published(TicketUpdatedEvent, version=2)
    published.assert_not_published(TicketCreatedEvent)
    with pytest.raises(AssertionError, match="was published 1 time"):
        published.assert_not_published(TicketUpdatedEvent, version=1)


def test_an_unknown_field_is_a_type_error_not_a_silent_mismatch() -> None:
    bus = Bus(MemoryTransport(MemoryBroker()))
    with pytest.raises(TypeError, match="no field 'versoin'"):
        PublishedEvents(bus).events(TicketUpdatedEvent, versoin=2)


def test_capture_needs_the_memory_transport() -> None:
    class Elsewhere:
        url = "nats://127.0.0.1:4222"

        def add_connection_lost_callback(self, callback: object) -> None:
            pass

    with pytest.raises(TypeError, match="in-memory transport"):
        PublishedEvents(Bus(Elsewhere()))  # type: ignore[arg-type]
