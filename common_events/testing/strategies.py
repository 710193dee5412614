"""Hypothesis strategies for every event, for property tests in service code.

::

    from hypothesis import given
    from common_events.testing import strategies as ce

    @given(ce.ticket_updated_events(version=st.integers(1, 5)))
    def test_applies_any_update(event): ...

Each ``<event>_events(**overrides)`` takes, per field (attribute name), a value or a
strategy in place of the default one. The defaults cover what the wire allows: any
non-empty id, any non-negative price, any version, any date-time with any offset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from hypothesis import strategies as st

from common_events.events.base import Event
from common_events.events.models import (
    CancelledOrderTicket,
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderTicket,
    PaymentCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.events.registry import EVENT_TYPES
from common_events.events.subjects import OrderStatus, Subjects

E = TypeVar("E", bound=Event)

SAFE_INTEGER = 2**53 - 1
"""The largest integer a JavaScript number holds exactly (``Number.MAX_SAFE_INTEGER``)."""


def object_ids() -> st.SearchStrategy[str]:
    """MongoDB ObjectIds as the reference services write them (24 hex digits)."""
    return st.binary(min_size=12, max_size=12).map(bytes.hex)


def ids() -> st.SearchStrategy[str]:
    """Any non-empty id, mostly ObjectIds."""
    return st.one_of(object_ids(), st.text(min_size=1, max_size=40))


def versions(min_value: int = 0) -> st.SearchStrategy[int]:
    return st.integers(min_value=min_value, max_value=SAFE_INTEGER)


def prices() -> st.SearchStrategy[float]:
    """Non-negative finite prices, whole (written as ``20``) and fractional."""
    return st.one_of(
        st.integers(min_value=0, max_value=1_000_000).map(float),
        st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
    )


def titles() -> st.SearchStrategy[str]:
    return st.text(max_size=80)


def utc_offsets() -> st.SearchStrategy[timezone]:
    return st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda minutes: UTC if minutes == 0 else timezone(timedelta(minutes=minutes))
    )


def date_times() -> st.SearchStrategy[datetime]:
    """Aware date-times in any offset; a day short of the calendar's ends, so that every
    one of them has a UTC equivalent."""
    return st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=utc_offsets(),
    )


def order_statuses() -> st.SearchStrategy[OrderStatus]:
    return st.sampled_from(OrderStatus)


def order_tickets(**overrides: Any) -> st.SearchStrategy[OrderTicket]:
    return _builds(OrderTicket, {"id": ids(), "price": prices()}, overrides)


def cancelled_order_tickets(**overrides: Any) -> st.SearchStrategy[CancelledOrderTicket]:
    return _builds(CancelledOrderTicket, {"id": ids()}, overrides)


def ticket_created_events(**overrides: Any) -> st.SearchStrategy[TicketCreatedEvent]:
    defaults = {
        "id": ids(),
        "version": versions(),
        "title": titles(),
        "price": prices(),
        "user_id": ids(),
    }
    return _builds(TicketCreatedEvent, defaults, overrides)


def ticket_updated_events(**overrides: Any) -> st.SearchStrategy[TicketUpdatedEvent]:
    defaults = {
        "id": ids(),
        "version": versions(),
        "title": titles(),
        "price": prices(),
        "user_id": ids(),
        "order_id": st.none() | ids(),
    }
    return _builds(TicketUpdatedEvent, defaults, overrides)


def order_created_events(**overrides: Any) -> st.SearchStrategy[OrderCreatedEvent]:
    defaults = {
        "id": ids(),
        "version": versions(),
        "status": order_statuses(),
        "user_id": ids(),
        "expires_at": date_times(),
        "ticket": order_tickets(),
    }
    return _builds(OrderCreatedEvent, defaults, overrides)


def order_cancelled_events(**overrides: Any) -> st.SearchStrategy[OrderCancelledEvent]:
    defaults = {"id": ids(), "version": versions(), "ticket": cancelled_order_tickets()}
    return _builds(OrderCancelledEvent, defaults, overrides)


def expiration_complete_events(**overrides: Any) -> st.SearchStrategy[ExpirationCompleteEvent]:
    return _builds(ExpirationCompleteEvent, {"order_id": ids()}, overrides)


def payment_created_events(**overrides: Any) -> st.SearchStrategy[PaymentCreatedEvent]:
    defaults = {"id": ids(), "order_id": ids(), "stripe_id": ids()}
    return _builds(PaymentCreatedEvent, defaults, overrides)


STRATEGIES: Mapping[Subjects, Callable[..., st.SearchStrategy[Any]]] = {
    Subjects.TICKET_CREATED: ticket_created_events,
    Subjects.TICKET_UPDATED: ticket_updated_events,
    Subjects.ORDER_CREATED: order_created_events,
    Subjects.ORDER_CANCELLED: order_cancelled_events,
    Subjects.EXPIRATION_COMPLETE: expiration_complete_events,
    Subjects.PAYMENT_CREATED: payment_created_events,
}
"""The strategy of each subject's event (read-only by convention; no state)."""


def events_of(event_type: type[E], **overrides: Any) -> st.SearchStrategy[E]:
    """The strategy for ``event_type``, e.g. ``events_of(TicketCreatedEvent)``."""
    strategy: st.SearchStrategy[E] = STRATEGIES[event_type.subject](**overrides)
    return strategy


def any_event() -> st.SearchStrategy[Event]:
    """An event of any subject."""
    return st.one_of(*(make() for make in STRATEGIES.values()))


def register_strategies() -> None:
    """Make ``st.from_type(TicketCreatedEvent)`` (and ``@given`` with type hints) use
    these strategies. The pytest plugin calls this when Hypothesis is installed."""
    for subject, make in STRATEGIES.items():
        st.register_type_strategy(EVENT_TYPES[subject], make())
    st.register_type_strategy(OrderTicket, order_tickets())
    st.register_type_strategy(CancelledOrderTicket, cancelled_order_tickets())


def _builds(
    model: type[Any], defaults: Mapping[str, Any], overrides: Mapping[str, Any]
) -> st.SearchStrategy[Any]:
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise TypeError(
            f"{model.__name__} has no field {', '.join(sorted(unknown))}; "
            f"its fields: {', '.join(defaults)}"
        )
    fields = {
        name: value if isinstance(value, st.SearchStrategy) else st.just(value)
        for name, value in {**defaults, **overrides}.items()
    }
    # Not st.builds(model, ...): it would also fill in the parameters of the model's
    # signature, which pydantic names by alias (``userId``), beside ours.
    return st.fixed_dictionaries(fields).map(model.model_validate)
