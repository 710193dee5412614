"""The orders service's SQLite database: its copy of the tickets, and its orders.

The ticket copy is only ever written from events. An update is applied only on top of
the version right before it (``WHERE version = previous_version``); anything else is
either a redelivery of something already applied (ignored) or arrived too early
(``OutOfOrder``: the message comes back later, by when the missing version is here).
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime

from common_events import OrderStatus, OutOfOrder, TicketCreatedEvent, TicketUpdatedEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id      TEXT PRIMARY KEY,
    title   TEXT NOT NULL,
    price   REAL NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    status     TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    ticket_id  TEXT NOT NULL REFERENCES tickets (id),
    version    INTEGER NOT NULL
);
"""

# The statuses in which an order holds its ticket (the reference isReserved() query).
HOLDING = (OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.COMPLETE)


class TicketNotFound(LookupError):
    """The local copy has no such ticket (yet)."""


class OrderNotFound(LookupError):
    """No order has this id."""


class ConcurrentUpdate(Exception):
    """The order changed between read and write; read it again and retry."""


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    title: str
    price: float
    version: int


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    user_id: str
    status: OrderStatus
    expires_at: datetime
    ticket_id: str
    version: int


class Store:
    """``path`` is a file, or ``":memory:"`` for tests."""

    def __init__(self, path: str = ":memory:") -> None:
        # isolation_level=None: every statement below is its own transaction; none of
        # the changes needs two statements to be atomic.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- the ticket copy, written only from events -----------------------------------

    def add_ticket(self, event: TicketCreatedEvent) -> bool:
        """Store a new ticket; ``False`` if it is already here (a redelivery)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO tickets (id, title, price, version) VALUES (?, ?, ?, ?)",
            (event.id, event.title, event.price, event.version),
        )
        return cursor.rowcount == 1

    def apply_ticket_update(self, event: TicketUpdatedEvent) -> bool:
        """Apply ``event`` on top of the version before it.

        ``True`` when applied, ``False`` when this version (or a later one) is already
        here. Raises ``OutOfOrder`` when the version before it has not arrived yet.
        """
        cursor = self._db.execute(
            "UPDATE tickets SET title = ?, price = ?, version = ? WHERE id = ? AND version = ?",
            (event.title, event.price, event.version, event.id, event.previous_version),
        )
        if cursor.rowcount == 1:
            return True
        current = self.find_ticket(event.id)
        if current is not None and current.version >= event.version:
            return False
        have = "nothing" if current is None else f"version {current.version}"
        raise OutOfOrder(
            f"ticket {event.id} version {event.version} needs version "
            f"{event.previous_version} first; have {have}"
        )

    def find_ticket(self, ticket_id: str) -> Ticket | None:
        row = self._db.execute(
            "SELECT id, title, price, version FROM tickets WHERE id = ?", (ticket_id,)
        ).fetchone()
        return None if row is None else Ticket(*row)

    def get_ticket(self, ticket_id: str) -> Ticket:
        ticket = self.find_ticket(ticket_id)
        if ticket is None:
            raise TicketNotFound(f"no ticket {ticket_id!r}")
        return ticket

    # -- orders, this service's own records ------------------------------------------

    def is_reserved(self, ticket_id: str) -> bool:
        placeholders = ", ".join("?" for _ in HOLDING)
        row = self._db.execute(
            f"SELECT 1 FROM orders WHERE ticket_id = ? AND status IN ({placeholders})",
            (ticket_id, *(status.value for status in HOLDING)),
        ).fetchone()
        return row is not None

    def add_order(self, *, user_id: str, ticket_id: str, expires_at: datetime) -> Order:
        order = Order(
            id=secrets.token_hex(12),
            user_id=user_id,
            status=OrderStatus.CREATED,
            expires_at=expires_at,
            ticket_id=ticket_id,
            version=0,
        )
        self._db.execute(
            "INSERT INTO orders (id, user_id, status, expires_at, ticket_id, version) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                order.id,
                order.user_id,
                order.status.value,
                order.expires_at.isoformat(),
                order.ticket_id,
                order.version,
            ),
        )
        return order

    def get_order(self, order_id: str) -> Order:
        row = self._db.execute(
            "SELECT id, user_id, status, expires_at, ticket_id, version FROM orders WHERE id = ?",
            (order_id,),
        ).fetchone()
        if row is None:
            raise OrderNotFound(f"no order {order_id!r}")
        order_id, user_id, status, expires_at, ticket_id, version = row
        return Order(
            order_id,
            user_id,
            OrderStatus(status),
            datetime.fromisoformat(expires_at),
            ticket_id,
            version,
        )

    def set_order_status(self, order: Order, status: OrderStatus) -> Order:
        saved = replace(order, status=status, version=order.version + 1)
        cursor = self._db.execute(
            "UPDATE orders SET status = ?, version = ? WHERE id = ? AND version = ?",
            (saved.status.value, saved.version, order.id, order.version),
        )
        if cursor.rowcount != 1:
            raise ConcurrentUpdate(f"order {order.id!r} changed since version {order.version}")
        return saved
