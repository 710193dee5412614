"""The orders service's database: its copy of the tickets, and its orders.

SQLAlchemy 2 with asyncio, on a SQLite file through aiosqlite. The table of the
deliveries its idempotent listeners applied (``common_events.outbox``) lives in the same
file, so a ticket event's change and the record that it was applied commit together.

The ticket copy is only ever written from events. An update is applied only on top of
the version right before it; anything else is either old news (a version already here:
ignored) or arrived too early (``OutOfOrder``: the message comes back later, by when the
missing version is here). ``version`` is the mapper's version column on both tables:
every UPDATE says ``WHERE id = ? AND version = <the version read>``, so of two writers
that read the same version only one succeeds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common_events import OrderStatus, OutOfOrder, TicketCreatedEvent, TicketUpdatedEvent
from common_events.outbox import create_tables
from sqlalchemy import DateTime, Enum, ForeignKey, String, TypeDecorator, exists, select
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The statuses in which an order holds its ticket (the reference isReserved() query).
HOLDING = (OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.COMPLETE)


class TicketNotFound(LookupError):
    """The local copy has no such ticket (yet)."""


class OrderNotFound(LookupError):
    """No order has this id."""


class ConcurrentUpdate(Exception):
    """The order changed between read and write; read it again and retry."""


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC date-time that comes back aware (SQLite stores it without its offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a naive date-time; give it a time zone")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    """This service's copy of a ticket."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str]
    price: Mapped[float]
    version: Mapped[int] = mapped_column()

    __mapper_args__ = {
        "version_id_col": version,
        "version_id_generator": False,  # set from the event
    }

    def __repr__(self) -> str:
        return (
            f"Ticket(id={self.id!r}, title={self.title!r}, price={self.price!r}, "
            f"version={self.version!r})"
        )


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str]
    status: Mapped[OrderStatus] = mapped_column(
        Enum(
            OrderStatus,
            native_enum=False,
            length=32,
            values_callable=lambda statuses: [status.value for status in statuses],
        )
    )
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"))
    version: Mapped[int] = mapped_column()

    __mapper_args__ = {
        "version_id_col": version,
        "version_id_generator": False,  # +1 per change, by the service
    }

    def __repr__(self) -> str:
        return (
            f"Order(id={self.id!r}, user_id={self.user_id!r}, status={self.status!r}, "
            f"ticket_id={self.ticket_id!r}, version={self.version!r})"
        )


def open_database(path: str) -> AsyncEngine:
    """An engine on the SQLite file ``path``, in WAL mode (readers do not wait for the
    writer)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    sa_event.listen(engine.sync_engine, "connect", _write_ahead_log)
    return engine


def _write_ahead_log(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


async def create_schema(engine: AsyncEngine) -> None:
    """The service's tables and the outbox's (the applied deliveries among them), where
    they do not exist yet."""
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await create_tables(engine)


# -- the ticket copy, written only from events -----------------------------------------


async def add_ticket(session: AsyncSession, event: TicketCreatedEvent) -> bool:
    """Copy a new ticket; ``False`` if it is here already.

    A redelivery of the same message never gets here (the idempotent listener skips
    it); this is for the same event published again as a new message (NATS Streaming
    has no de-duplication).
    """
    if await session.get(Ticket, event.id) is not None:
        return False
    session.add(Ticket(id=event.id, title=event.title, price=event.price, version=event.version))
    return True


async def apply_ticket_update(session: AsyncSession, event: TicketUpdatedEvent) -> bool:
    """Apply ``event`` on top of the version before it.

    ``True`` when applied, ``False`` when this version (or a later one) is already
    here. Raises ``OutOfOrder`` when the version before it has not arrived yet.
    """
    ticket = await session.get(Ticket, event.id)
    if ticket is not None and ticket.version == event.previous_version:
        ticket.title, ticket.price, ticket.version = event.title, event.price, event.version
        return True
    if ticket is not None and ticket.version >= event.version:
        return False
    have = "nothing" if ticket is None else f"version {ticket.version}"
    raise OutOfOrder(
        f"ticket {event.id} version {event.version} needs version "
        f"{event.previous_version} first; have {have}"
    )


async def find_ticket(session: AsyncSession, ticket_id: str) -> Ticket | None:
    return await session.get(Ticket, ticket_id)


async def get_ticket(session: AsyncSession, ticket_id: str) -> Ticket:
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise TicketNotFound(f"no ticket {ticket_id!r}")
    return ticket


# -- orders, this service's own records ------------------------------------------------


async def is_reserved(session: AsyncSession, ticket_id: str) -> bool:
    holding = exists().where(Order.ticket_id == ticket_id, Order.status.in_(HOLDING))
    return bool(await session.scalar(select(holding)))


async def get_order(session: AsyncSession, order_id: str) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id!r}")
    return order
