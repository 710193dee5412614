"""A small service and its own test suite, run with pytester as a service's CI would.

The service's tests use only what installing common-events gives them: the plugin's
fixtures (loaded through the pytest11 entry point), ``deliver`` and the strategies.
They run in pytest-asyncio's default strict mode, as a service that configured nothing.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

SERVICE = '''
from __future__ import annotations

from datetime import datetime, timedelta

from common_events import (
    Bus, Listener, Message, OrderCreatedEvent, OrderStatus, OrderTicket, OutOfOrder,
    Publisher, TicketCreatedEvent, TicketUpdatedEvent,
)


class Tickets:
    """The orders service's copy of the tickets (a database in real life)."""

    def __init__(self) -> None:
        self.rows: dict[str, TicketUpdatedEvent | TicketCreatedEvent] = {}

    def find(self, ticket_id: str, version: int | None):
        row = self.rows.get(ticket_id)
        return row if row is not None and row.version == version else None


class TicketCreatedListener(Listener[TicketCreatedEvent]):
    queue_group = "orders-service"

    def __init__(self, bus: Bus, tickets: Tickets) -> None:
        super().__init__(bus)
        self.tickets = tickets

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.tickets.rows[event.id] = event
        await msg.ack()


class TicketUpdatedListener(Listener[TicketUpdatedEvent]):
    queue_group = "orders-service"

    def __init__(self, bus: Bus, tickets: Tickets) -> None:
        super().__init__(bus)
        self.tickets = tickets

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        if self.tickets.find(event.id, event.previous_version) is None:
            raise OutOfOrder(f"ticket {event.id} v{event.previous_version} not found")
        self.tickets.rows[event.id] = event
        await msg.ack()


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


async def create_order(bus: Bus, tickets: Tickets, ticket_id: str, user_id: str,
                       now: datetime) -> OrderCreatedEvent:
    ticket = tickets.rows[ticket_id]
    order = OrderCreatedEvent(
        id="order-1", version=0, status=OrderStatus.CREATED, user_id=user_id,
        expires_at=now + timedelta(minutes=15),
        ticket=OrderTicket(id=ticket.id, price=ticket.price),
    )
    await OrderCreatedPublisher(bus).publish(order)
    return order
'''

SERVICE_TESTS = """
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings, strategies as st

from common_events import OrderCreatedEvent, TicketCreatedEvent, TicketUpdatedEvent
from common_events.testing import deliver
from common_events.testing.strategies import ticket_created_events

from service import Tickets, TicketCreatedListener, TicketUpdatedListener, create_order

pytestmark = pytest.mark.asyncio

CREATED = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")


def updated(version):
    return TicketUpdatedEvent(id="t1", version=version, title="Concert", price=25,
                              user_id="u1")


@pytest.fixture
def tickets():
    store = Tickets()
    store.rows["t1"] = CREATED
    return store


async def test_acks_the_message(event_bus, tickets):
    result = await deliver(TicketUpdatedListener(event_bus, tickets), updated(1))
    assert result.acked


async def test_does_not_ack_a_skipped_version(event_bus, tickets):
    result = await deliver(TicketUpdatedListener(event_bus, tickets), updated(2))
    assert result.not_acked


async def test_dead_letters_what_is_not_an_event(event_bus, tickets):
    result = await deliver(TicketUpdatedListener(event_bus, tickets), b"<html>")
    assert result.dead_lettered


async def test_publishes_the_order(event_bus, tickets, assert_published):
    now = datetime(2026, 11, 27, 6, 25, tzinfo=UTC)
    await create_order(event_bus, tickets, "t1", "u2", now)
    assert_published(OrderCreatedEvent, user_id="u2", ticket={"id": "t1", "price": 20},
                     expires_at="2026-11-27T06:40:00.000Z")


async def test_wrong_expectation_shows_the_diff(event_bus, tickets, assert_published):
    now = datetime(2026, 11, 27, 6, 25, tzinfo=UTC)
    await create_order(event_bus, tickets, "t1", "u2", now)
    assert_published(OrderCreatedEvent, user_id="u3", ticket={"price": 30})


@settings(max_examples=25, deadline=None)
@given(ticket_created_events(price=st.integers(0, 500)))
def test_stores_any_created_ticket(event):
    tickets = Tickets()
    tickets.rows[event.id] = event
    assert tickets.find(event.id, 0 if event.version == 0 else event.version) is event


@settings(max_examples=10, deadline=None)
@given(st.from_type(TicketUpdatedEvent))
def test_from_type_knows_the_events(event):
    assert event.id and event.version >= 0
"""


def _plugin_arguments() -> list[str]:
    # An installed package loads the plugin through its entry point; a bare checkout
    # (PYTHONPATH only) has no entry point, so it is named on the command line.
    installed = any(
        point.value == "common_events.testing.plugin" for point in entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "common_events.testing.plugin"]


def test_a_service_suite_uses_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(service=SERVICE, test_service=SERVICE_TESTS)
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )

    result = pytester.runpytest("-p", "no:cacheprovider", *_plugin_arguments())

    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*no OrderCreatedEvent with user_id='u3', ticket={price=30} was published on "
            "order:created; 1 message(s) were published there:",
            '*#1 OrderCreatedEvent {"id":"order-1",*"userId":"u2",*}',
            "*user_id: expected 'u3', got 'u2'",
            "*ticket.price: expected 30, got 20.0",
        ]
    )


def test_the_package_declares_the_plugin_entry_point() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())

    declared = pyproject["project"]["entry-points"]["pytest11"]

    assert declared == {"common_events": "common_events.testing.plugin"}
