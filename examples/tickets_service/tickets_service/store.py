"""The tickets table: the one place a ticket's state and version live.

SQLAlchemy 2 with asyncio, on a SQLite file through aiosqlite. The outbox's tables
(``common_events.outbox``) live in the same file, so a ticket and the event that tells
the others about it are committed in one transaction (``tickets_service/service.py``).

``version`` is the mapper's version column: every UPDATE of a ticket says ``WHERE id = ?
AND version = <the version read>``, so a change is written only if nobody changed the
row since it was read (optimistic concurrency, as mongoose-update-if-current does in the
reference service). The version is what other services use to apply changes in order.
"""

from __future__ import annotations

from typing import Any

from common_events.outbox import create_tables
from sqlalchemy import String
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class TicketNotFound(LookupError):
    """No ticket has this id."""


class TicketReserved(Exception):
    """A reserved ticket cannot be edited (the reference service answers 400)."""


class ConcurrentUpdate(Exception):
    """The ticket changed between read and write; read it again and retry."""


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"

    # 24 hex digits, the shape of the MongoDB ObjectIds the Node services use as ids.
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    title: Mapped[str]
    price: Mapped[float]
    user_id: Mapped[str]
    order_id: Mapped[str | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column()

    # The service sets the next version itself (+1 per change); the mapper adds the
    # "still at the version read" condition to the UPDATE and raises StaleDataError
    # when no row matched.
    __mapper_args__ = {
        "version_id_col": version,
        "version_id_generator": False,
    }

    def __repr__(self) -> str:
        return (
            f"Ticket(id={self.id!r}, title={self.title!r}, price={self.price!r}, "
            f"user_id={self.user_id!r}, order_id={self.order_id!r}, version={self.version!r})"
        )


def open_database(path: str) -> AsyncEngine:
    """An engine on the SQLite file ``path``.

    WAL mode lets the outbox relay read the outbox table while the service writes.
    """
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    sa_event.listen(engine.sync_engine, "connect", _write_ahead_log)
    return engine


def _write_ahead_log(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


async def create_schema(engine: AsyncEngine) -> None:
    """The tickets table and the outbox's tables, where they do not exist yet."""
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await create_tables(engine)
