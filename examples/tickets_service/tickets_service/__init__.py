"""The tickets service: the source of truth for tickets.

It publishes ``ticket:created`` and ``ticket:updated`` whenever a ticket changes, and
listens to ``order:created`` / ``order:cancelled`` to mark a ticket reserved or free,
as the reference system's tickets service does.
"""

from tickets_service.service import Tickets
from tickets_service.store import Ticket, TicketNotFound, TicketReserved, TicketStore

__all__ = ["Ticket", "TicketNotFound", "TicketReserved", "TicketStore", "Tickets"]
