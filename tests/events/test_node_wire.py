"""The JSON the Node services write parses, and is written back as the same JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common_events.events import (
    Event,
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    PaymentCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)

WIRE = Path(__file__).parent / "node_wire"

FIXTURES: list[tuple[str, type[Event]]] = [
    ("ticket_created.json", TicketCreatedEvent),
    ("ticket_updated.json", TicketUpdatedEvent),
    ("ticket_updated_free.json", TicketUpdatedEvent),
    ("order_created.json", OrderCreatedEvent),
    ("order_cancelled.json", OrderCancelledEvent),
    ("expiration_complete.json", ExpirationCompleteEvent),
    ("payment_created.json", PaymentCreatedEvent),
]


@pytest.mark.parametrize(("name", "model"), FIXTURES, ids=[name for name, _ in FIXTURES])
def test_node_json_round_trips_to_the_same_json_value(name: str, model: type[Event]) -> None:
    raw = (WIRE / name).read_bytes()
    event = model.model_validate_json(raw)
    written = event.model_dump_json()
    assert json.loads(written) == json.loads(raw)


@pytest.mark.parametrize(("name", "model"), FIXTURES, ids=[name for name, _ in FIXTURES])
def test_node_json_is_written_back_byte_for_byte(name: str, model: type[Event]) -> None:
    # Same key order, no spaces, integral prices without ".0", dates as toISOString().
    raw = (WIRE / name).read_bytes()
    assert model.model_validate_json(raw).model_dump_json().encode() == raw


def test_order_created_reads_into_python_types() -> None:
    event = OrderCreatedEvent.model_validate_json((WIRE / "order_created.json").read_bytes())
    assert event.status is OrderStatus.CREATED
    assert event.user_id == "6743f1c2a9e0b1c2d3e4f5bb"
    assert event.expires_at.isoformat() == "2026-11-27T06:40:00+00:00"
    assert event.ticket.price == 20


def test_absent_optional_order_id_is_left_out_not_null() -> None:
    event = TicketUpdatedEvent.model_validate_json((WIRE / "ticket_updated_free.json").read_bytes())
    assert event.order_id is None
    assert "orderId" not in json.loads(event.model_dump_json())
    assert "null" not in event.model_dump_json()


def test_null_order_id_from_a_producer_reads_as_absent() -> None:
    raw = json.loads((WIRE / "ticket_updated.json").read_bytes())
    raw["orderId"] = None
    event = TicketUpdatedEvent.model_validate(raw)
    assert event.order_id is None
    assert "orderId" not in event.model_dump_json()
