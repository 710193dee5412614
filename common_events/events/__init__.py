"""Event contracts: subjects, order statuses and one pydantic model per event.

No I/O here and no import of the rest of the package: a service's contract tests need
only this module.
"""

from common_events.events.base import Event, VersionedEvent, WireModel
from common_events.events.fields import to_iso_string
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
from common_events.events.registry import EVENT_TYPES, UnknownSubjectError, event_type
from common_events.events.subjects import OrderStatus, Subjects

__all__ = [
    "EVENT_TYPES",
    "CancelledOrderTicket",
    "Event",
    "ExpirationCompleteEvent",
    "OrderCancelledEvent",
    "OrderCreatedEvent",
    "OrderStatus",
    "OrderTicket",
    "PaymentCreatedEvent",
    "Subjects",
    "TicketCreatedEvent",
    "TicketUpdatedEvent",
    "UnknownSubjectError",
    "VersionedEvent",
    "WireModel",
    "event_type",
    "to_iso_string",
]
