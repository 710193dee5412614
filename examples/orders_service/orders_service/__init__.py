"""The orders service: orders for tickets, and a local copy of the tickets.

It never asks the tickets service for a ticket: it keeps its own copy, filled from
``ticket:created`` and kept current by ``ticket:updated``, applied once per message
(idempotent listeners) and strictly in version order, as the reference orders service
does. It publishes ``order:created`` and ``order:cancelled``.
"""

from orders_service.service import Orders, TicketAlreadyReserved
from orders_service.store import (
    ConcurrentUpdate,
    Order,
    OrderNotFound,
    Ticket,
    TicketNotFound,
    create_schema,
    open_database,
)

__all__ = [
    "ConcurrentUpdate",
    "Order",
    "OrderNotFound",
    "Orders",
    "Ticket",
    "TicketAlreadyReserved",
    "TicketNotFound",
    "create_schema",
    "open_database",
]
