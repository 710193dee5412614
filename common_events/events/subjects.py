"""The subjects (NATS Streaming channels) and the order statuses of the system."""

from __future__ import annotations

from enum import StrEnum


class Subjects(StrEnum):
    """Every subject an event travels on; the values are fixed by the wire format."""

    TICKET_CREATED = "ticket:created"
    TICKET_UPDATED = "ticket:updated"
    ORDER_CREATED = "order:created"
    ORDER_CANCELLED = "order:cancelled"
    EXPIRATION_COMPLETE = "expiration:complete"
    PAYMENT_CREATED = "payment:created"


class OrderStatus(StrEnum):
    """The life of an order, as the orders service stores it."""

    CREATED = "created"
    """The order exists but the ticket it reserves is not yet confirmed."""
    CANCELLED = "cancelled"
    """The ticket was reserved by another order, the user cancelled, or the order expired."""
    AWAITING_PAYMENT = "awaiting:payment"
    """The ticket is reserved; the payment is outstanding."""
    COMPLETE = "complete"
    """The ticket is reserved and paid for."""
