"""Transactional outbox and idempotent listeners on the service's own database.

Needs the ``sql`` extra (``pip install 'common-events[sql]'``: SQLAlchemy with asyncio,
``aiosqlite``, ``asyncpg``). ``import common_events`` never imports this package.

- ``Outbox.add(session, event)`` stores an event in the caller's transaction.
- ``OutboxRelay`` publishes the committed events through the bus, in order, and marks
  them sent once the broker confirmed them.
- ``IdempotentListener`` applies each message once, in the same transaction as the
  handler's work.
- ``create_tables(engine)`` (or the Alembic migration in docs/outbox.md) makes the tables.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ModuleNotFoundError as error:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        "common_events.outbox needs SQLAlchemy: pip install 'common-events[sql]'",
        name=error.name,
    ) from error

from common_events.outbox.backoff import Backoff
from common_events.outbox.claim import ClaimKind
from common_events.outbox.idempotent import IdempotentListener, delivery_key, purge_processed
from common_events.outbox.relay import MESSAGE_ID_HEADER, OutboxRelay, RelayState
from common_events.outbox.tables import (
    OutboxRecord,
    ProcessedDelivery,
    RelayLease,
    create_tables,
    drop_tables,
    metadata,
)
from common_events.outbox.writer import Outbox, default_aggregate

__all__ = [
    "MESSAGE_ID_HEADER",
    "Backoff",
    "ClaimKind",
    "IdempotentListener",
    "Outbox",
    "OutboxRecord",
    "OutboxRelay",
    "ProcessedDelivery",
    "RelayLease",
    "RelayState",
    "create_tables",
    "default_aggregate",
    "delivery_key",
    "drop_tables",
    "metadata",
    "purge_processed",
]
