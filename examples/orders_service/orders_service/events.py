"""What the orders service sends and receives on the bus."""

from __future__ import annotations

from common_events import (
    Message,
    OrderCancelledEvent,
    OrderCreatedEvent,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.outbox import IdempotentListener
from sqlalchemy.ext.asyncio import AsyncSession

from orders_service.store import add_ticket, apply_ticket_update

QUEUE_GROUP = "orders-service"
"""Every instance of this service joins this group, so each ticket event is applied once."""


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


class OrderCancelledPublisher(Publisher[OrderCancelledEvent]):
    pass


# The ticket listeners are idempotent: each runs ``handle`` in a transaction that also
# records the delivery's key (subject, queue group, and the message's Nats-Msg-Id, or
# its broker sequence where there are no headers), commits, and only then acknowledges.
# A message delivered again after its change was committed (the process died before
# the ack, or the ack was lost) finds its key and is acknowledged without running
# ``handle``. ``handle`` neither commits nor acks; if it raises, its work and the key
# roll back together and the message is retried.


class TicketCreatedListener(IdempotentListener[TicketCreatedEvent]):
    """Copy a new ticket into the local database."""

    queue_group = QUEUE_GROUP

    async def handle(self, event: TicketCreatedEvent, session: AsyncSession, msg: Message) -> None:
        await add_ticket(session, event)


class TicketUpdatedListener(IdempotentListener[TicketUpdatedEvent]):
    """Apply a ticket change to the local copy, strictly in version order.

    ``apply_ticket_update`` raises ``OutOfOrder`` when version N arrives before N-1: the
    transaction rolls back (the delivery's key with it), the listener leaves the message
    unacknowledged (logged at info level, not as an error) and it is delivered again
    after a short delay, by when N-1 has usually been applied. A version that never
    becomes applicable ends on the dead-letter subject after ``max_deliveries`` instead
    of blocking forever.
    """

    queue_group = QUEUE_GROUP

    async def handle(self, event: TicketUpdatedEvent, session: AsyncSession, msg: Message) -> None:
        await apply_ticket_update(session, event)
