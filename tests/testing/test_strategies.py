from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common_events import (
    EVENT_TYPES,
    Event,
    OrderCreatedEvent,
    Subjects,
    TicketUpdatedEvent,
    event_type,
)
from common_events.testing import strategies


@settings(max_examples=60, deadline=None)
@given(strategies.any_event())
def test_every_generated_event_survives_the_wire(event: Event) -> None:
    wire = event.model_dump_json()

    assert type(event).model_validate_json(wire) == event
    assert event_type(event.subject) is type(event)


@pytest.mark.parametrize("subject", list(Subjects))
def test_there_is_a_strategy_for_every_subject(subject: Subjects) -> None:
    model = EVENT_TYPES[subject]

    @settings(max_examples=5, deadline=None)
    @given(strategies.events_of(model))
    def generated(event: Event) -> None:
        assert type(event) is model

    generated()


@settings(max_examples=30, deadline=None)
@given(strategies.ticket_updated_events(version=st.integers(1, 3), order_id=None, title="Show"))
def test_overrides_take_values_or_strategies(event: TicketUpdatedEvent) -> None:
    assert 1 <= event.version <= 3
    assert event.order_id is None
    assert event.title == "Show"


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(TypeError, match="no field orderid"):
        strategies.ticket_updated_events(orderid=None)


@settings(max_examples=20, deadline=None)
@given(st.from_type(OrderCreatedEvent))
def test_the_plugin_registers_the_strategies_for_from_type(event: OrderCreatedEvent) -> None:
    # Without the registration Hypothesis would build the model from its annotations,
    # which knows nothing of the wire's rules (non-empty ids, aware date-times).
    assert event.id and event.user_id and event.ticket.id
    assert event.expires_at.utcoffset() is not None
