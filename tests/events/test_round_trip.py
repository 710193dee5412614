"""Every event survives its own wire format, whatever the (valid) values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

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

ids = st.text(min_size=1, max_size=30)
versions = st.integers(min_value=0, max_value=2**53)
prices = st.floats(
    min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False
) | st.integers(min_value=0, max_value=10**9)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)


def event_of(model: type[Event], **fields: st.SearchStrategy[object]) -> st.SearchStrategy[Event]:
    # Build through validation, as data arrives; st.builds would pass its own guesses
    # for annotated pydantic types.
    return st.fixed_dictionaries(fields).map(model.model_validate)


events = st.one_of(
    event_of(
        TicketCreatedEvent, id=ids, version=versions, title=st.text(), price=prices, user_id=ids
    ),
    event_of(
        TicketUpdatedEvent,
        id=ids,
        version=versions,
        title=st.text(),
        price=prices,
        user_id=ids,
        order_id=st.none() | ids,
    ),
    event_of(
        OrderCreatedEvent,
        id=ids,
        version=versions,
        status=st.sampled_from(OrderStatus),
        user_id=ids,
        expires_at=moments,
        ticket=st.fixed_dictionaries({"id": ids, "price": prices}),
    ),
    event_of(
        OrderCancelledEvent, id=ids, version=versions, ticket=st.fixed_dictionaries({"id": ids})
    ),
    event_of(ExpirationCompleteEvent, order_id=ids),
    event_of(PaymentCreatedEvent, id=ids, order_id=ids, stripe_id=ids),
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_every_event_round_trips_through_its_wire_json(event: Event) -> None:
    raw = event.model_dump_json()
    again = type(event).model_validate_json(raw)
    assert again == event
    assert again.model_dump_json() == raw
    data = json.loads(raw)
    assert all("_" not in key for key in data), "keys are camelCase"
    assert None not in data.values(), "absent optional fields are left out"
    if isinstance(event, OrderCreatedEvent):
        assert data["expiresAt"].endswith("Z")
        assert event.expires_at.tzinfo is UTC
