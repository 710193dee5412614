"""The orders service's use cases: reserve a ticket, cancel an order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from common_events import (
    Bus,
    CancelledOrderTicket,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    OrderTicket,
)

from orders_service.events import OrderCancelledPublisher, OrderCreatedPublisher
from orders_service.store import Order, Store

RESERVATION = timedelta(minutes=15)
"""How long an order holds its ticket before it expires (the reference's 15 minutes)."""


class TicketAlreadyReserved(Exception):
    """Another order holds this ticket."""


class Orders:
    def __init__(self, store: Store, bus: Bus, *, reservation: timedelta = RESERVATION) -> None:
        self.store = store
        self.reservation = reservation
        self._created = OrderCreatedPublisher(bus)
        self._cancelled = OrderCancelledPublisher(bus)

    async def create(self, *, ticket_id: str, user_id: str) -> Order:
        """Reserve ``ticket_id`` for ``user_id`` and tell the other services."""
        # Raises TicketNotFound when ticket:created has not reached this service yet.
        ticket = self.store.get_ticket(ticket_id)
        if self.store.is_reserved(ticket.id):
            raise TicketAlreadyReserved(f"ticket {ticket.id!r} is already reserved")
        order = self.store.add_order(
            user_id=user_id,
            ticket_id=ticket.id,
            expires_at=datetime.now(UTC) + self.reservation,
        )
        await self._created.publish(
            OrderCreatedEvent(
                id=order.id,
                version=order.version,
                status=order.status,
                user_id=order.user_id,
                expires_at=order.expires_at,
                ticket=OrderTicket(id=ticket.id, price=ticket.price),
            )
        )
        return order

    async def cancel(self, order_id: str) -> Order:
        """Cancel ``order_id``; its ticket becomes free again."""
        order = self.store.set_order_status(self.store.get_order(order_id), OrderStatus.CANCELLED)
        await self._cancelled.publish(
            OrderCancelledEvent(
                id=order.id,
                version=order.version,
                ticket=CancelledOrderTicket(id=order.ticket_id),
            )
        )
        return order
