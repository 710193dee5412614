"""The outbox's tables: stored events, the relay lease, and handled deliveries.

They live in their own ``MetaData`` so a service's models and migrations stay its own:
``create_tables(engine)`` makes them, or an Alembic migration does (docs/outbox.md).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

logger = logging.getLogger(__name__)

OUTBOX_TABLE = "common_events_outbox"
LEASE_TABLE = "common_events_outbox_lease"
PROCESSED_TABLE = "common_events_processed"

# SQLite makes an auto-incrementing rowid only of a column typed INTEGER.
_Id = BigInteger().with_variant(Integer(), "sqlite")


class OutboxBase(DeclarativeBase):
    """The declarative base of the outbox's tables, apart from the service's own."""

    metadata = MetaData()


class OutboxRecord(OutboxBase):
    """One event waiting to be published (``sent_at`` is null) or already sent."""

    __tablename__ = OUTBOX_TABLE

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    """Publication order: the relay publishes unsent rows by increasing ``id``."""
    message_id: Mapped[str] = mapped_column(String(64))
    """Sent as ``Nats-Msg-Id``: the same on every attempt, so JetStream stores a repeat
    once and idempotent listeners recognise it."""
    subject: Mapped[str] = mapped_column(String(255))
    aggregate: Mapped[str] = mapped_column(String(255))
    """Events of one aggregate are published in ``id`` order, also by several relays."""
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    """The event's wire JSON, byte for byte as it is published."""
    headers: Mapped[str | None] = mapped_column(Text, default=None)
    """Extra headers as a JSON object (trace context...), or null."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    __table_args__ = (
        UniqueConstraint("message_id", name="uq_common_events_outbox_message_id"),
        Index(
            "ix_common_events_outbox_unsent",
            "id",
            postgresql_where=sent_at.is_(None),
            sqlite_where=sent_at.is_(None),
        ),
        Index(
            "ix_common_events_outbox_unsent_aggregate",
            "aggregate",
            "id",
            postgresql_where=sent_at.is_(None),
            sqlite_where=sent_at.is_(None),
        ),
        Index("ix_common_events_outbox_sent_at", "sent_at"),
    )

    def __repr__(self) -> str:
        return (
            f"OutboxRecord(id={self.id!r}, subject={self.subject!r}, "
            f"aggregate={self.aggregate!r}, sent_at={self.sent_at!r})"
        )


class RelayLease(OutboxBase):
    """Which relay may publish, where the database has no row locks to share the work."""

    __tablename__ = LEASE_TABLE

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProcessedDelivery(OutboxBase):
    """A delivery an idempotent listener has applied (committed with its work)."""

    __tablename__ = PROCESSED_TABLE

    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    queue_group: Mapped[str] = mapped_column(String(255), primary_key=True)
    message_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_common_events_processed_processed_at", "processed_at"),)


metadata = OutboxBase.metadata
"""The outbox's tables; Alembic users add it to ``target_metadata``."""


async def create_tables(engine: AsyncEngine) -> None:
    """Create the outbox's tables and indexes where they do not exist yet."""
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    logger.info("outbox tables ready in %s", engine.url.render_as_string(hide_password=True))


async def drop_tables(engine: AsyncEngine) -> None:
    """Drop the outbox's tables (tests, and a service that stops using the outbox)."""
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
