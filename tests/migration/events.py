"""Events for the migration tests: valid payloads with ids that say where they belong."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from common_events.core import encode_event
from common_events.events import (
    CancelledOrderTicket,
    Event,
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    OrderTicket,
    PaymentCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)

SUBJECTS = (
    "ticket:created",
    "ticket:updated",
    "order:created",
    "order:cancelled",
    "expiration:complete",
    "payment:created",
)
EXPIRES = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=15)


def make_event(subject: str, event_id: str) -> Event:
    if subject == "ticket:created":
        return TicketCreatedEvent(id=event_id, version=0, title="Concert", price=20, user_id="u1")
    if subject == "ticket:updated":
        return TicketUpdatedEvent(id=event_id, version=1, title="Concert", price=25, user_id="u1")
    if subject == "order:created":
        return OrderCreatedEvent(
            id=event_id,
            version=0,
            status=OrderStatus.CREATED,
            user_id="u2",
            expires_at=EXPIRES,
            ticket=OrderTicket(id="t1", price=20),
        )
    if subject == "order:cancelled":
        return OrderCancelledEvent(id=event_id, version=1, ticket=CancelledOrderTicket(id="t1"))
    if subject == "expiration:complete":
        return ExpirationCompleteEvent(order_id=event_id)
    if subject == "payment:created":
        return PaymentCreatedEvent(id=event_id, order_id="o1", stripe_id="ch_1")
    raise ValueError(subject)


def payload(subject: str, event_id: str) -> bytes:
    return encode_event(make_event(subject, event_id))


def event_id(data: bytes) -> str:
    """The id a payload of ``payload()`` carries (``orderId`` for expiration:complete)."""
    document = json.loads(data)
    return str(document.get("id") or document["orderId"])
