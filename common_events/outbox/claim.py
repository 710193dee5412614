"""Which relay publishes which rows: row locks where the database has them, else a lease.

Row locks (PostgreSQL): each relay locks a batch of unsent rows with ``FOR UPDATE SKIP
LOCKED``, publishes it and marks it sent in the same transaction, so several relays share
the work and a relay that dies releases its rows when its connection goes. A row whose
aggregate has an earlier unsent row outside the batch waits for a later pass, so events
of one aggregate keep their order.

Lease (SQLite, which locks the whole file): one relay at a time holds a lease row and
renews it on every pass; the others stand by and take over once it expires. Rows are
read and marked sent in short transactions, never held open while publishing, so the
service's own writes do not wait on the broker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common_events.outbox.tables import OutboxRecord, RelayLease

logger = logging.getLogger(__name__)

ClaimKind = Literal["auto", "row-lock", "lease"]

ROW_LOCK_DIALECTS = frozenset({"postgresql"})
"""Where ``claim="auto"`` picks row locks; elsewhere it picks the lease."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An unsent outbox row as the relay publishes it."""

    id: int
    message_id: str
    subject: str
    aggregate: str
    payload: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, row: Any) -> PendingEvent:
        """From a row of ``id, message_id, subject, aggregate, payload, headers``."""
        id_, message_id, subject, aggregate, payload, headers = tuple(row)
        return cls(
            id=id_,
            message_id=message_id,
            subject=subject,
            aggregate=aggregate,
            payload=bytes(payload),
            headers=json.loads(headers) if headers else {},
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one pass did: rows it claimed, rows published (and marked sent), and the
    error that stopped publishing, if any. ``standby``: another relay holds the lease."""

    claimed: int = 0
    published: int = 0
    error: Exception | None = None
    standby: bool = False


PublishRows = Callable[
    [Sequence[PendingEvent], float | None], Awaitable[tuple[list[int], Exception | None]]
]
"""Publishes rows in order until one fails (or the monotonic deadline passes); returns
the ids confirmed by the broker and the error that stopped it."""

_COLUMNS = (
    OutboxRecord.id,
    OutboxRecord.message_id,
    OutboxRecord.subject,
    OutboxRecord.aggregate,
    OutboxRecord.payload,
    OutboxRecord.headers,
)


class Claim(Protocol):
    kind: str

    async def publish_batch(self, limit: int, publish: PublishRows) -> BatchResult: ...

    async def release(self) -> None: ...


def choose_claim(
    kind: ClaimKind,
    engine: AsyncEngine,
    *,
    lease_name: str,
    lease_ttl: float,
    holder: str,
) -> Claim:
    if kind == "auto":
        kind = "row-lock" if engine.dialect.name in ROW_LOCK_DIALECTS else "lease"
    if kind == "row-lock":
        return RowLockClaim(engine)
    if kind == "lease":
        return LeaseClaim(engine, name=lease_name, ttl=lease_ttl, holder=holder)
    raise ValueError(f"claim must be 'auto', 'row-lock' or 'lease', not {kind!r}")


async def _mark_sent(connection: AsyncConnection, ids: Sequence[int]) -> None:
    await connection.execute(
        update(OutboxRecord)
        .where(OutboxRecord.id.in_(ids), OutboxRecord.sent_at.is_(None))
        .values(sent_at=datetime.now(UTC))
    )


class RowLockClaim:
    """Batches locked with ``FOR UPDATE SKIP LOCKED``, held while they are published."""

    kind = "row-lock"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def publish_batch(self, limit: int, publish: PublishRows) -> BatchResult:
        async with self.engine.connect() as connection, connection.begin():
            result = await connection.execute(
                select(*_COLUMNS)
                .where(OutboxRecord.sent_at.is_(None))
                .order_by(OutboxRecord.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            claimed = [PendingEvent.of(row) for row in result.all()]
            if not claimed:
                return BatchResult()
            batch = await self._in_aggregate_order(connection, claimed)
            published, error = await publish(batch, None)
            if published:
                await _mark_sent(connection, published)
        # Committed on leaving the block: rows are marked sent and unlocked only now, and
        # what was not published is unlocked for the next pass.
        return BatchResult(claimed=len(claimed), published=len(published), error=error)

    async def _in_aggregate_order(
        self, connection: AsyncConnection, claimed: list[PendingEvent]
    ) -> list[PendingEvent]:
        """Drop the rows of an aggregate that has an earlier unsent row outside this
        batch (locked by another relay, or committed late): they wait their turn."""
        ids = [event.id for event in claimed]
        result = await connection.execute(
            select(OutboxRecord.aggregate, func.min(OutboxRecord.id))
            .where(
                OutboxRecord.sent_at.is_(None),
                OutboxRecord.aggregate.in_({event.aggregate for event in claimed}),
                OutboxRecord.id < max(ids),
                OutboxRecord.id.not_in(ids),
            )
            .group_by(OutboxRecord.aggregate)
        )
        blocked: dict[str, int] = {aggregate: first for aggregate, first in result.all()}
        if not blocked:
            return claimed
        kept = [
            event
            for event in claimed
            if event.aggregate not in blocked or event.id < blocked[event.aggregate]
        ]
        logger.debug(
            "%d row(s) wait for earlier events of their aggregate", len(claimed) - len(kept)
        )
        return kept

    async def release(self) -> None:
        """Nothing to release: locks go with the transaction."""


class LeaseClaim:
    """One relay at a time, by a lease row renewed on every pass."""

    kind = "lease"

    def __init__(self, engine: AsyncEngine, *, name: str, ttl: float, holder: str) -> None:
        if ttl <= 0:
            raise ValueError("lease_ttl must be > 0 seconds")
        self.engine = engine
        self.name = name
        self.ttl = ttl
        self.holder = holder
        self._held_until: float | None = None  # time.monotonic() at which ours expires

    @property
    def holding(self) -> bool:
        return self._held_until is not None and time.monotonic() < self._held_until

    async def acquire(self) -> bool:
        """Take or renew the lease; ``False`` while another relay holds it."""
        started = time.monotonic()
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.ttl)
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(RelayLease)
                .where(
                    RelayLease.name == self.name,
                    or_(RelayLease.holder == self.holder, RelayLease.expires_at < now),
                )
                .values(holder=self.holder, expires_at=expires)
            )
            taken = result.rowcount == 1
        if not taken:
            taken = await self._create()
        was_holding = self._held_until is not None
        self._held_until = started + self.ttl if taken else None
        if taken and not was_holding:
            logger.info("relay %s took the outbox lease %r", self.holder, self.name)
        elif was_holding and not taken:
            logger.warning("relay %s lost the outbox lease %r", self.holder, self.name)
        return taken

    async def _create(self) -> bool:
        try:
            async with self.engine.begin() as connection:
                exists = await connection.scalar(
                    select(RelayLease.name).where(RelayLease.name == self.name)
                )
                if exists is not None:
                    return False
                await connection.execute(
                    insert(RelayLease).values(
                        name=self.name,
                        holder=self.holder,
                        expires_at=datetime.now(UTC) + timedelta(seconds=self.ttl),
                    )
                )
        except IntegrityError:
            return False  # another relay made it first
        return True

    async def publish_batch(self, limit: int, publish: PublishRows) -> BatchResult:
        if not await self.acquire():
            return BatchResult(standby=True)
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(*_COLUMNS)
                .where(OutboxRecord.sent_at.is_(None))
                .order_by(OutboxRecord.id)
                .limit(limit)
            )
            claimed = [PendingEvent.of(row) for row in result.all()]
        if not claimed:
            return BatchResult()
        assert self._held_until is not None
        # Stop publishing well before the lease could pass to another relay.
        deadline = self._held_until - self.ttl / 3
        published, error = await publish(claimed, deadline)
        if published:
            async with self.engine.begin() as connection:
                await _mark_sent(connection, published)
        return BatchResult(claimed=len(claimed), published=len(published), error=error)

    async def release(self) -> None:
        """Give the lease up at once, so a standby relay takes over without waiting."""
        if self._held_until is None:
            return
        self._held_until = None
        async with self.engine.begin() as connection:
            await connection.execute(
                update(RelayLease)
                .where(RelayLease.name == self.name, RelayLease.holder == self.holder)
                .values(expires_at=datetime.now(UTC))
            )
        logger.info("relay %s released the outbox lease %r", self.holder, self.name)
