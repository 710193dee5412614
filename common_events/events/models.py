"""The six events of the ticketing system, one model per subject.

Field order is the order the reference services write their keys in, so our JSON is the
same bytes as theirs for the same data.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import StrictStr

from common_events.events.base import Event, VersionedEvent, WireModel
from common_events.events.fields import Id, Price, UtcDatetime, Version
from common_events.events.subjects import OrderStatus, Subjects


class TicketCreatedEvent(VersionedEvent):
    """A ticket was put up for sale."""

    subject: ClassVar[Subjects] = Subjects.TICKET_CREATED

    id: Id
    version: Version
    title: StrictStr
    price: Price
    user_id: Id


class TicketUpdatedEvent(VersionedEvent):
    """A ticket's title or price changed, or it was reserved (``orderId`` set) or freed."""

    subject: ClassVar[Subjects] = Subjects.TICKET_UPDATED

    id: Id
    version: Version
    title: StrictStr
    price: Price
    user_id: Id
    order_id: Id | None = None


class OrderTicket(WireModel):
    """The ticket an order reserves, as the order events carry it."""

    id: Id
    price: Price


class OrderCreatedEvent(VersionedEvent):
    """An order reserved a ticket until ``expires_at``."""

    subject: ClassVar[Subjects] = Subjects.ORDER_CREATED

    id: Id
    version: Version
    status: OrderStatus
    user_id: Id
    expires_at: UtcDatetime
    ticket: OrderTicket


class CancelledOrderTicket(WireModel):
    """The ticket a cancelled order frees."""

    id: Id


class OrderCancelledEvent(VersionedEvent):
    """An order was cancelled; its ticket is free again."""

    subject: ClassVar[Subjects] = Subjects.ORDER_CANCELLED

    id: Id
    version: Version
    ticket: CancelledOrderTicket


class ExpirationCompleteEvent(Event):
    """An order's reservation time ran out."""

    subject: ClassVar[Subjects] = Subjects.EXPIRATION_COMPLETE

    order_id: Id


class PaymentCreatedEvent(Event):
    """An order was paid for."""

    subject: ClassVar[Subjects] = Subjects.PAYMENT_CREATED

    id: Id
    order_id: Id
    stripe_id: Id
