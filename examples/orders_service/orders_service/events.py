"""What the orders service sends and receives on the bus."""

from __future__ import annotations

from common_events import (
    Bus,
    Listener,
    Message,
    OrderCancelledEvent,
    OrderCreatedEvent,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)

from orders_service.store import Store

QUEUE_GROUP = "orders-service"
"""Every instance of this service joins this group, so each ticket event is applied once."""


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


class OrderCancelledPublisher(Publisher[OrderCancelledEvent]):
    pass


class TicketCreatedListener(Listener[TicketCreatedEvent]):
    """Copy a new ticket into the local database."""

    queue_group = QUEUE_GROUP

    def __init__(self, bus: Bus, store: Store) -> None:
        super().__init__(bus)
        self.store = store

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.store.add_ticket(event)
        await msg.ack()


class TicketUpdatedListener(Listener[TicketUpdatedEvent]):
    """Apply a ticket change to the local copy, strictly in version order.

    ``apply_ticket_update`` raises ``OutOfOrder`` when version N arrives before N-1:
    the listener leaves the message unacknowledged (logged at info level, not as an
    error) and it is delivered again after a short delay, by when N-1 has usually been
    applied. A version that never becomes applicable ends on the dead-letter subject
    after ``max_deliveries`` instead of blocking forever.
    """

    queue_group = QUEUE_GROUP

    def __init__(self, bus: Bus, store: Store) -> None:
        super().__init__(bus)
        self.store = store

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        self.store.apply_ticket_update(event)
        await msg.ack()
