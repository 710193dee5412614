"""What the tickets service receives on the bus.

What it sends (``ticket:created``, ``ticket:updated``) goes through the outbox: see
``tickets_service/service.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common_events import Bus, Listener, Message, OrderCancelledEvent, OrderCreatedEvent

if TYPE_CHECKING:
    from tickets_service.service import Tickets

QUEUE_GROUP = "tickets-service"
"""Every instance of this service joins this group, so each order event is handled once."""


class OrderCreatedListener(Listener[OrderCreatedEvent]):
    """An order reserved a ticket: mark it reserved, so it cannot be edited."""

    queue_group = QUEUE_GROUP

    def __init__(self, bus: Bus, tickets: Tickets) -> None:
        super().__init__(bus)
        self.tickets = tickets

    async def on_message(self, event: OrderCreatedEvent, msg: Message) -> None:
        # An unknown ticket raises TicketNotFound: the message is not acknowledged, is
        # retried, and after max_deliveries lands on the dead-letter subject. The
        # reservation and its ticket:updated are committed before the ack; a redelivery
        # (the ack was lost) finds the ticket reserved and changes nothing.
        await self.tickets.reserve(event.ticket.id, order_id=event.id)
        await msg.ack()


class OrderCancelledListener(Listener[OrderCancelledEvent]):
    """An order was cancelled: its ticket is free again."""

    queue_group = QUEUE_GROUP

    def __init__(self, bus: Bus, tickets: Tickets) -> None:
        super().__init__(bus)
        self.tickets = tickets

    async def on_message(self, event: OrderCancelledEvent, msg: Message) -> None:
        await self.tickets.release(event.ticket.id, order_id=event.id)
        await msg.ack()
