"""Every event survives its own wire format, whatever the (valid) values."""

from __future__ import annotations

import json
from datetime import UTC

from hypothesis import given, settings

from common_events.events import Event, OrderCreatedEvent
from common_events.testing.strategies import any_event


@settings(max_examples=300, deadline=None)
@given(any_event())
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
