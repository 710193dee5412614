"""From a subject to the event model that travels on it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from common_events.events.base import Event
from common_events.events.models import (
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCreatedEvent,
    PaymentCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.events.subjects import Subjects

EVENT_TYPES: Mapping[Subjects, type[Event]] = MappingProxyType(
    {
        model.subject: model
        for model in (
            TicketCreatedEvent,
            TicketUpdatedEvent,
            OrderCreatedEvent,
            OrderCancelledEvent,
            ExpirationCompleteEvent,
            PaymentCreatedEvent,
        )
    }
)
"""Every subject of ``Subjects`` and its event model (read-only)."""


class UnknownSubjectError(KeyError):
    """No event travels on the given subject."""

    def __str__(self) -> str:
        # KeyError's own __str__ quotes the whole message; say it plainly instead.
        return str(self.args[0]) if self.args else "unknown subject"


def event_type(subject: Subjects | str) -> type[Event]:
    """The event model for ``subject`` (a ``Subjects`` member or its wire string)."""
    try:
        return EVENT_TYPES[Subjects(subject)]
    except ValueError:
        known = ", ".join(s.value for s in Subjects)
        raise UnknownSubjectError(
            f"no event travels on subject {subject!r}; known subjects: {known}"
        ) from None
