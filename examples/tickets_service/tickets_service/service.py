"""The tickets service's use cases: change a ticket, then tell the others."""

from __future__ import annotations

from common_events import Bus, TicketCreatedEvent, TicketUpdatedEvent

from tickets_service.events import TicketCreatedPublisher, TicketUpdatedPublisher
from tickets_service.store import Ticket, TicketStore


class Tickets:
    """Each change is saved first and published second, as in the reference service.

    If the publish fails the caller gets the error; the handlers below republish the
    ticket's current state when the same order event comes back, so a replica that
    missed a version catches up instead of waiting forever.
    """

    def __init__(self, store: TicketStore, bus: Bus) -> None:
        self.store = store
        self._created = TicketCreatedPublisher(bus)
        self._updated = TicketUpdatedPublisher(bus)

    async def create(self, *, title: str, price: float, user_id: str) -> Ticket:
        ticket = self.store.create(title=title, price=price, user_id=user_id)
        await self._created.publish(
            TicketCreatedEvent(
                id=ticket.id,
                version=ticket.version,
                title=ticket.title,
                price=ticket.price,
                user_id=ticket.user_id,
            )
        )
        return ticket

    async def edit(self, ticket_id: str, *, title: str, price: float) -> Ticket:
        ticket = self.store.edit(ticket_id, title=title, price=price)
        await self._publish_update(ticket)
        return ticket

    async def reserve(self, ticket_id: str, *, order_id: str) -> Ticket:
        ticket = self.store.get(ticket_id)
        # A redelivered order:created finds the ticket already reserved by that order:
        # bumping the version again would publish a version nobody can place.
        if ticket.order_id != order_id:
            ticket = self.store.set_order(ticket_id, order_id)
        await self._publish_update(ticket)
        return ticket

    async def release(self, ticket_id: str, *, order_id: str) -> Ticket:
        ticket = self.store.get(ticket_id)
        if ticket.order_id == order_id:
            ticket = self.store.set_order(ticket_id, None)
        elif ticket.order_id is not None:
            # A late cancellation of an older order must not free the ticket that a
            # newer order holds now.
            return ticket
        await self._publish_update(ticket)
        return ticket

    async def _publish_update(self, ticket: Ticket) -> None:
        await self._updated.publish(
            TicketUpdatedEvent(
                id=ticket.id,
                version=ticket.version,
                title=ticket.title,
                price=ticket.price,
                user_id=ticket.user_id,
                order_id=ticket.order_id,
            )
        )
