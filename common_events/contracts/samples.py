"""One realistic event per subject: AsyncAPI examples, documentation and tests."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

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
from common_events.events.subjects import OrderStatus, Subjects

logger = logging.getLogger(__name__)

_TICKET = "6563f1a2b4c5d6e7f8091a2b"
_ORDER = "6563f1c9b4c5d6e7f8091a3c"
_USER = "6563f0e4b4c5d6e7f8091a10"


def sample_events() -> dict[Subjects, Event]:
    """A valid event of every subject, with MongoDB-style ids as the Node services use."""
    return {
        Subjects.TICKET_CREATED: TicketCreatedEvent(
            id=_TICKET, version=0, title="Concert", price=20, user_id=_USER
        ),
        Subjects.TICKET_UPDATED: TicketUpdatedEvent(
            id=_TICKET, version=1, title="Concert", price=25.5, user_id=_USER, order_id=_ORDER
        ),
        Subjects.ORDER_CREATED: OrderCreatedEvent(
            id=_ORDER,
            version=0,
            status=OrderStatus.CREATED,
            user_id=_USER,
            expires_at=datetime(2026, 11, 27, 6, 40, tzinfo=UTC),
            ticket=OrderTicket(id=_TICKET, price=20),
        ),
        Subjects.ORDER_CANCELLED: OrderCancelledEvent(
            id=_ORDER, version=1, ticket=CancelledOrderTicket(id=_TICKET)
        ),
        Subjects.EXPIRATION_COMPLETE: ExpirationCompleteEvent(order_id=_ORDER),
        Subjects.PAYMENT_CREATED: PaymentCreatedEvent(
            id="6563f2d0b4c5d6e7f8091a4d", order_id=_ORDER, stripe_id="ch_3OEXAMPLE00000000"
        ),
    }
