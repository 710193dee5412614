"""``IdempotentListener``: apply each delivery once, in the handler's own transaction.

The delivery's key (subject, queue group, message id) is written in the same transaction
as the handler's work. A redelivery of an applied message (its ack was lost: the process
died between commit and ack, or the broker did not get the ack) finds the key, skips the
handler and is acknowledged. The key is the ``Nats-Msg-Id`` header where the transport
has headers (JetStream: the outbox's stable id, so a repeat published by a relay after a
crash is recognised too), else the broker's sequence.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common_events import Bus, Event, Listener, Message
from common_events.outbox.tables import ProcessedDelivery

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

MESSAGE_ID_HEADER = "Nats-Msg-Id"


def delivery_key(msg: Message) -> str:
    """The broker's id of the message: the same on every redelivery of it."""
    message_id = msg.headers.get(MESSAGE_ID_HEADER)
    if message_id:
        return f"id:{message_id}"
    return f"seq:{msg.sequence}"


class IdempotentListener(Listener[E]):
    """A listener whose ``handle`` runs in a database transaction, once per message.

    ::

        class TicketCreatedListener(IdempotentListener[TicketCreatedEvent]):
            queue_group = "orders-service"

            async def handle(self, event, session, msg):
                session.add(Ticket(id=event.id, title=event.title, price=event.price))

        await TicketCreatedListener(bus, sessions).listen()

    ``handle`` does its work in ``session`` and neither commits nor acknowledges: the
    listener commits the work with the delivery's key, then acknowledges. A ``handle``
    that raises rolls everything back, and the message is retried by the listener's
    failure policy (``OutOfOrder`` included), as with any listener.
    """

    def __init__(self, bus: Bus, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(bus)
        self.sessions = sessions

    @abstractmethod
    async def handle(self, event: E, session: AsyncSession, msg: Message) -> None:
        """Apply ``event`` in ``session``; do not commit, do not ``ack``."""

    def delivery_key(self, msg: Message) -> str:
        """The key that tells a redelivery from a new message (see ``delivery_key``)."""
        return delivery_key(msg)

    async def apply(self, event: E, msg: Message) -> bool:
        """Run ``handle`` and record the delivery in one transaction.

        Returns ``False``, without running ``handle``, when the delivery was applied
        before. Does not acknowledge (``on_message`` does, after the commit).
        """
        key = self.delivery_key(msg)
        async with self.sessions() as session:
            try:
                async with session.begin():
                    # The key goes first: a second delivery of the same message running
                    # at the same time waits here for this transaction, then finds the
                    # key, instead of doing the work twice.
                    await session.execute(
                        insert(ProcessedDelivery).values(
                            subject=self.subject.value,
                            queue_group=self.queue_group,
                            message_key=key,
                            processed_at=datetime.now(UTC),
                        )
                    )
                    await self.handle(event, session, msg)
            except IntegrityError:
                if not await self._was_applied(session, key):
                    raise  # the handler's own constraint, not the key: a real failure
                self.logger.info(
                    "%s %s was applied before (delivery %d); acknowledging it again",
                    msg.subject,
                    key,
                    msg.delivery_count,
                )
                return False
        return True

    async def _was_applied(self, session: AsyncSession, key: str) -> bool:
        await session.rollback()
        found = await session.get(ProcessedDelivery, (self.subject.value, self.queue_group, key))
        await session.rollback()
        return found is not None

    async def on_message(self, event: E, msg: Message) -> None:
        await self.apply(event, msg)
        await msg.ack()


async def purge_processed(engine: AsyncEngine, older_than: timedelta) -> int:
    """Forget deliveries applied more than ``older_than`` ago; return how many.

    Keep them longer than a message can come back: the listeners' longest redelivery
    (``ack_wait`` times ``max_deliveries``), and the outbox relays' longest outage.
    """
    cutoff = datetime.now(UTC) - older_than
    async with engine.begin() as connection:
        result = await connection.execute(
            delete(ProcessedDelivery).where(ProcessedDelivery.processed_at <= cutoff)
        )
    return int(result.rowcount or 0)
