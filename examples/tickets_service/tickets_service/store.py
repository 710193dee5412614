"""The tickets table: the one place a ticket's state and version live.

Every change goes through ``_save``, which bumps ``version`` only if nobody changed the
row since it was read (optimistic concurrency, as mongoose-update-if-current does in the
reference service). The version is what other services use to apply changes in order.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass, replace

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id       TEXT PRIMARY KEY,
    title    TEXT NOT NULL,
    price    REAL NOT NULL,
    user_id  TEXT NOT NULL,
    order_id TEXT,
    version  INTEGER NOT NULL
)
"""


class TicketNotFound(LookupError):
    """No ticket has this id."""


class TicketReserved(Exception):
    """A reserved ticket cannot be edited (the reference service answers 400)."""


class ConcurrentUpdate(Exception):
    """The ticket changed between read and write; read it again and retry."""


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    title: str
    price: float
    user_id: str
    version: int
    order_id: str | None = None


class TicketStore:
    """Tickets in SQLite. ``path`` is a file, or ``":memory:"`` for tests."""

    def __init__(self, path: str = ":memory:") -> None:
        # isolation_level=None: each statement commits on its own; the single UPDATE in
        # _save is the whole transaction, so there is nothing to group.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, *, title: str, price: float, user_id: str) -> Ticket:
        # 24 hex digits, the shape of the MongoDB ObjectIds the Node services use as ids.
        ticket = Ticket(
            id=secrets.token_hex(12), title=title, price=price, user_id=user_id, version=0
        )
        self._db.execute(
            "INSERT INTO tickets (id, title, price, user_id, order_id, version) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (ticket.id, ticket.title, ticket.price, ticket.user_id, None, ticket.version),
        )
        return ticket

    def get(self, ticket_id: str) -> Ticket:
        row = self._db.execute(
            "SELECT id, title, price, user_id, version, order_id FROM tickets WHERE id = ?",
            (ticket_id,),
        ).fetchone()
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id!r}")
        return Ticket(*row)

    def edit(self, ticket_id: str, *, title: str, price: float) -> Ticket:
        ticket = self.get(ticket_id)
        if ticket.order_id is not None:
            raise TicketReserved(f"ticket {ticket_id!r} is reserved and cannot be edited")
        return self._save(ticket, replace(ticket, title=title, price=price))

    def set_order(self, ticket_id: str, order_id: str | None) -> Ticket:
        ticket = self.get(ticket_id)
        return self._save(ticket, replace(ticket, order_id=order_id))

    def _save(self, read: Ticket, changed: Ticket) -> Ticket:
        saved = replace(changed, version=read.version + 1)
        cursor = self._db.execute(
            "UPDATE tickets SET title = ?, price = ?, order_id = ?, version = ? "
            "WHERE id = ? AND version = ?",
            (saved.title, saved.price, saved.order_id, saved.version, read.id, read.version),
        )
        if cursor.rowcount != 1:
            raise ConcurrentUpdate(f"ticket {read.id!r} changed since version {read.version}")
        return saved
