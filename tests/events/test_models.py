"""The event models' rules: spelling, strictness, immutability, subjects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from common_events.events import (
    EVENT_TYPES,
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    PaymentCreatedEvent,
    Subjects,
    TicketCreatedEvent,
    TicketUpdatedEvent,
    UnknownSubjectError,
    VersionedEvent,
    event_type,
    to_iso_string,
)

TICKET: dict[str, Any] = {"id": "t1", "version": 0, "title": "Concert", "price": 20, "userId": "u1"}


def ticket(**changes: Any) -> dict[str, Any]:
    return {**TICKET, **changes}


def test_subject_and_status_values_are_the_wire_strings() -> None:
    assert [s.value for s in Subjects] == [
        "ticket:created",
        "ticket:updated",
        "order:created",
        "order:cancelled",
        "expiration:complete",
        "payment:created",
    ]
    assert [s.value for s in OrderStatus] == [
        "created",
        "cancelled",
        "awaiting:payment",
        "complete",
    ]
    assert Subjects.TICKET_CREATED == "ticket:created"


def test_every_subject_has_exactly_one_event_model() -> None:
    assert set(EVENT_TYPES) == set(Subjects)
    for subject, model in EVENT_TYPES.items():
        assert model.subject is subject
        assert event_type(subject) is model
        assert event_type(subject.value) is model


def test_unknown_subject_names_it_and_the_known_ones() -> None:
    with pytest.raises(UnknownSubjectError) as caught:
        event_type("ticket:deleted")
    assert "'ticket:deleted'" in str(caught.value)
    assert "ticket:created" in str(caught.value)
    assert isinstance(caught.value, KeyError)


def test_both_spellings_are_accepted_and_camel_case_is_written() -> None:
    by_alias = TicketCreatedEvent(id="t1", version=0, title="A", price=1, userId="u1")
    by_name = TicketCreatedEvent(id="t1", version=0, title="A", price=1, user_id="u1")
    assert by_alias == by_name
    assert by_name.user_id == "u1"
    assert json.loads(by_name.model_dump_json()) == {
        "id": "t1",
        "version": 0,
        "title": "A",
        "price": 1,
        "userId": "u1",
    }


def test_models_are_frozen() -> None:
    event = TicketCreatedEvent.model_validate(TICKET)
    with pytest.raises(ValidationError):
        event.price = 5  # type: ignore[misc]


def test_unknown_fields_are_ignored_and_never_written() -> None:
    event = TicketCreatedEvent.model_validate_json(json.dumps(ticket(venue="Arena", seats=3)))
    assert "venue" not in event.model_dump_json()
    assert not hasattr(event, "venue")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": "20"}, "price"),
        ({"price": True}, "price"),
        ({"price": -1}, "price"),
        ({"id": 20}, "id"),
        ({"id": ""}, "id"),
        ({"userId": ""}, "userId"),
        ({"version": -1}, "version"),
        ({"version": "1"}, "version"),
        ({"version": 1.0}, "version"),
        ({"version": 1.5}, "version"),
        ({"title": 5}, "title"),
    ],
)
def test_types_are_not_coerced_across_kinds(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TicketCreatedEvent.model_validate_json(json.dumps(ticket(**changes)))
    assert {error["loc"][0] for error in caught.value.errors()} == {field}


@pytest.mark.parametrize("price", [float("inf"), float("nan")])
def test_price_is_finite(price: float) -> None:
    with pytest.raises(ValidationError):
        TicketCreatedEvent(id="t", version=0, title="x", price=price, user_id="u")


def test_missing_required_field_is_an_error_that_names_it() -> None:
    raw = {key: value for key, value in TICKET.items() if key != "userId"}
    with pytest.raises(ValidationError, match="userId"):
        TicketCreatedEvent.model_validate_json(json.dumps(raw))


def order(expires_at: Any) -> dict[str, Any]:
    return {
        "id": "o1",
        "version": 0,
        "status": "awaiting:payment",
        "userId": "u1",
        "expiresAt": expires_at,
        "ticket": {"id": "t1", "price": 20},
    }


@pytest.mark.parametrize(
    "text",
    ["2026-11-27T07:40:00.000+01:00", "2026-11-27T06:40:00Z", "2026-11-27T01:40:00-05:00"],
)
def test_expires_at_accepts_any_offset_and_writes_to_iso_string(text: str) -> None:
    event = OrderCreatedEvent.model_validate_json(json.dumps(order(text)))
    assert event.expires_at == datetime(2026, 11, 27, 6, 40, tzinfo=UTC)
    assert event.expires_at.tzinfo is UTC
    assert json.loads(event.model_dump_json())["expiresAt"] == "2026-11-27T06:40:00.000Z"
    assert event.status is OrderStatus.AWAITING_PAYMENT


@pytest.mark.parametrize(
    "value", ["2026-11-27T06:40:00", 1764225600, "1764225600", "tomorrow", "2026-11-27"]
)
def test_expires_at_rejects_naive_numbers_and_nonsense(value: Any) -> None:
    with pytest.raises(ValidationError, match="expiresAt"):
        OrderCreatedEvent.model_validate_json(json.dumps(order(value)))


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_expires_at_outside_the_utc_years_is_a_validation_error(value: str) -> None:
    with pytest.raises(ValidationError, match="outside the years 1 to 9999"):
        OrderCreatedEvent.model_validate_json(json.dumps(order(value)))


def test_expires_at_keeps_milliseconds_like_a_javascript_date() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=timezone(timedelta(hours=2)))
    event = OrderCreatedEvent.model_validate(order(moment))
    assert event.expires_at == datetime(2026, 1, 2, 1, 4, 5, 678_000, tzinfo=UTC)
    assert to_iso_string(moment) == "2026-01-02T01:04:05.678Z"


def test_status_must_be_a_known_value() -> None:
    with pytest.raises(ValidationError, match="status"):
        OrderCreatedEvent.model_validate_json(
            json.dumps({**order("2026-11-27T06:40:00.000Z"), "status": "shipped"})
        )


def test_versioned_events_expose_the_version_they_follow() -> None:
    versioned = {TicketCreatedEvent, TicketUpdatedEvent, OrderCreatedEvent, OrderCancelledEvent}
    assert {m for m in EVENT_TYPES.values() if issubclass(m, VersionedEvent)} == versioned
    updated = TicketUpdatedEvent(id="t", version=3, title="x", price=1, user_id="u")
    assert updated.previous_version == 2
    created = TicketCreatedEvent(id="t", version=0, title="x", price=1, user_id="u")
    assert created.previous_version is None
    cancelled = OrderCancelledEvent.model_validate({"id": "o", "version": 1, "ticket": {"id": "t"}})
    assert cancelled.previous_version == 0


def test_unversioned_events_have_no_version() -> None:
    assert "version" not in ExpirationCompleteEvent.model_fields
    assert "version" not in PaymentCreatedEvent.model_fields
