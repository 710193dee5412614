"""The orders service's use cases: reserve a ticket, cancel an order."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from common_events import (
    Bus,
    CancelledOrderTicket,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    OrderTicket,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from orders_service.events import OrderCancelledPublisher, OrderCreatedPublisher
from orders_service.store import ConcurrentUpdate, Order, get_order, get_ticket, is_reserved

RESERVATION = timedelta(minutes=15)
"""How long an order holds its ticket before it expires (the reference's 15 minutes)."""


class TicketAlreadyReserved(Exception):
    """Another order holds this ticket."""


class Orders:
    """Each change is saved first and published second, as in the reference service."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        *,
        reservation: timedelta = RESERVATION,
    ) -> None:
        self.sessions = sessions
        self.reservation = reservation
        self._created = OrderCreatedPublisher(bus)
        self._cancelled = OrderCancelledPublisher(bus)

    async def create(self, *, ticket_id: str, user_id: str) -> Order:
        """Reserve ``ticket_id`` for ``user_id`` and tell the other services."""
        async with self.sessions.begin() as session:
            # Raises TicketNotFound when ticket:created has not reached this service yet.
            ticket = await get_ticket(session, ticket_id)
            if await is_reserved(session, ticket.id):
                raise TicketAlreadyReserved(f"ticket {ticket.id!r} is already reserved")
            order = Order(
                # 24 hex digits, the shape of the MongoDB ObjectIds the Node services use.
                id=secrets.token_hex(12),
                user_id=user_id,
                status=OrderStatus.CREATED,
                expires_at=datetime.now(UTC) + self.reservation,
                ticket_id=ticket.id,
                version=0,
            )
            session.add(order)
            price = ticket.price
        await self._created.publish(
            OrderCreatedEvent(
                id=order.id,
                version=order.version,
                status=order.status,
                user_id=order.user_id,
                expires_at=order.expires_at,
                ticket=OrderTicket(id=ticket_id, price=price),
            )
        )
        return order

    async def get(self, order_id: str) -> Order:
        async with self.sessions() as session:
            return await get_order(session, order_id)

    async def cancel(self, order_id: str) -> Order:
        """Cancel ``order_id``; its ticket becomes free again."""
        try:
            async with self.sessions.begin() as session:
                order = await get_order(session, order_id)
                order.status, order.version = OrderStatus.CANCELLED, order.version + 1
        except StaleDataError as error:
            raise ConcurrentUpdate(f"order {order_id!r} changed since it was read") from error
        await self._cancelled.publish(
            OrderCancelledEvent(
                id=order.id,
                version=order.version,
                ticket=CancelledOrderTicket(id=order.ticket_id),
            )
        )
        return order
