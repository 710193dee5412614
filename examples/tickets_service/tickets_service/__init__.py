"""The tickets service: the source of truth for tickets.

It publishes ``ticket:created`` and ``ticket:updated`` whenever a ticket changes, and
listens to ``order:created`` / ``order:cancelled`` to mark a ticket reserved or free,
as the reference system's tickets service does. Each change and its event are committed
in one transaction (a transactional outbox); an outbox relay publishes them.
"""

from tickets_service.service import Tickets
from tickets_service.store import (
    ConcurrentUpdate,
    Ticket,
    TicketNotFound,
    TicketReserved,
    create_schema,
    open_database,
)

__all__ = [
    "ConcurrentUpdate",
    "Ticket",
    "TicketNotFound",
    "TicketReserved",
    "Tickets",
    "create_schema",
    "open_database",
]
