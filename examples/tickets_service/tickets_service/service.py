"""The tickets service's use cases: change a ticket and tell the others, in one transaction."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from common_events import TicketCreatedEvent, TicketUpdatedEvent
from common_events.outbox import Outbox
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from tickets_service.store import ConcurrentUpdate, Ticket, TicketNotFound, TicketReserved


class Tickets:
    """Each change is saved together with the event that tells the others about it.

    One transaction writes the ticket's row and, through ``Outbox.add``, its
    ``ticket:created`` / ``ticket:updated`` into the outbox table of the same database.
    Either both are committed or neither is: no event is ever sent for a change that was
    rolled back, and none is lost for a change that was saved. The outbox relay (run
    beside the listeners, see ``__main__``) publishes the committed events in order, and
    keeps trying while the broker is down; nothing here waits for the broker.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> None:
        self.sessions = sessions
        self.outbox = outbox

    async def create(self, *, title: str, price: float, user_id: str) -> Ticket:
        ticket = Ticket(
            id=secrets.token_hex(12),
            title=title,
            price=price,
            user_id=user_id,
            order_id=None,
            version=0,
        )
        async with self.sessions.begin() as session:
            session.add(ticket)
            # An event that cannot be made (a negative price...) raises here and rolls
            # the ticket back with it: no ticket the others never hear of.
            self.outbox.add(
                session,
                TicketCreatedEvent(
                    id=ticket.id,
                    version=ticket.version,
                    title=ticket.title,
                    price=ticket.price,
                    user_id=ticket.user_id,
                ),
            )
        return ticket

    async def get(self, ticket_id: str) -> Ticket:
        async with self.sessions() as session:
            return await _get(session, ticket_id)

    async def edit(self, ticket_id: str, *, title: str, price: float) -> Ticket:
        def change(ticket: Ticket) -> bool:
            if ticket.order_id is not None:
                raise TicketReserved(f"ticket {ticket_id!r} is reserved and cannot be edited")
            ticket.title, ticket.price = title, price
            return True

        return await self._change(ticket_id, change)

    async def reserve(self, ticket_id: str, *, order_id: str) -> Ticket:
        def change(ticket: Ticket) -> bool:
            # A redelivered order:created finds the ticket reserved by that order
            # already: nothing changes, and the ticket:updated of the first delivery is
            # in the outbox, committed with the reservation.
            if ticket.order_id == order_id:
                return False
            ticket.order_id = order_id
            return True

        return await self._change(ticket_id, change)

    async def release(self, ticket_id: str, *, order_id: str) -> Ticket:
        def change(ticket: Ticket) -> bool:
            # Only the order that holds the ticket frees it: a late cancellation of an
            # older order must not free the ticket that a newer order holds now, and a
            # redelivered cancellation finds it free already.
            if ticket.order_id != order_id:
                return False
            ticket.order_id = None
            return True

        return await self._change(ticket_id, change)

    async def _change(self, ticket_id: str, change: Callable[[Ticket], bool]) -> Ticket:
        """Read the ticket, apply ``change``; if it changed anything, save the next
        version and its ``ticket:updated`` in the same transaction."""
        try:
            async with self.sessions.begin() as session:
                ticket = await _get(session, ticket_id)
                if change(ticket):
                    ticket.version += 1
                    self.outbox.add(
                        session,
                        TicketUpdatedEvent(
                            id=ticket.id,
                            version=ticket.version,
                            title=ticket.title,
                            price=ticket.price,
                            user_id=ticket.user_id,
                            order_id=ticket.order_id,
                        ),
                    )
        except StaleDataError as error:
            # Another replica saved a version of this ticket since it was read: this
            # change and its event were rolled back together.
            raise ConcurrentUpdate(f"ticket {ticket_id!r} changed since it was read") from error
        return ticket


async def _get(session: AsyncSession, ticket_id: str) -> Ticket:
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise TicketNotFound(f"no ticket {ticket_id!r}")
    return ticket
