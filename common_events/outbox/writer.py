"""``Outbox.add``: store an event in the service's own transaction."""

from __future__ import annotations

import json
import logging
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from common_events import Event
from common_events.core.codec import encode_event
from common_events.outbox.tables import OutboxRecord

logger = logging.getLogger(__name__)

_PENDING_KEY = "common_events.outbox.pending"
"""``session.info`` key: the outboxes to wake when this session's transaction commits."""


def default_aggregate(event: Event) -> str:
    """The key whose events keep their order: the event's ``id``, else its ``orderId``,
    else its subject."""
    for attribute in ("id", "order_id"):
        value = getattr(event, attribute, None)
        if value is not None:
            return str(value)
    return event.subject.value


class Outbox:
    """Writes events into the outbox table, inside the caller's transaction.

    ::

        async with sessions.begin() as session:
            session.add(ticket)
            outbox.add(session, TicketCreatedEvent(...))
        # committed together; the relay publishes the event

    Relays made with ``OutboxRelay(..., outbox=outbox)`` are woken when a transaction
    that added events commits, so events leave without waiting for the next poll.
    """

    def __init__(self) -> None:
        self._wakers: weakref.WeakSet[_Wakeable] = weakref.WeakSet()

    def add(
        self,
        session: Session | AsyncSession,
        event: Event,
        *,
        aggregate: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> OutboxRecord:
        """Store ``event`` for publication when ``session``'s transaction commits.

        ``aggregate`` groups the events that must be published in the order they were
        added (default: ``default_aggregate(event)``, the event's ``id``). ``headers`` go
        with the message where the transport carries headers (JetStream). Returns the
        row, whose ``message_id`` is the message's ``Nats-Msg-Id``.
        """
        if not isinstance(event, Event):
            raise TypeError(f"Outbox.add takes an event, not {type(event).__name__}")
        record = OutboxRecord(
            message_id=uuid.uuid4().hex,
            subject=event.subject.value,
            aggregate=aggregate if aggregate is not None else default_aggregate(event),
            payload=encode_event(event),
            headers=json.dumps(dict(headers), sort_keys=True) if headers else None,
            created_at=datetime.now(UTC),
        )
        session.add(record)
        if self._wakers:
            self._wake_after_commit(session)
        return record

    def attach(self, relay: _Wakeable) -> None:
        """Wake ``relay`` after every commit that added events (done by the relay)."""
        self._wakers.add(relay)

    def _wake_after_commit(self, session: Session | AsyncSession) -> None:
        sync_session = session.sync_session if isinstance(session, AsyncSession) else session
        pending: set[Outbox] | None = sync_session.info.get(_PENDING_KEY)
        if pending is None:
            pending = set()
            sync_session.info[_PENDING_KEY] = pending
            sa_event.listen(sync_session, "after_commit", _wake_pending)
            sa_event.listen(sync_session, "after_rollback", _forget_pending)
        pending.add(self)

    def _wake(self) -> None:
        for relay in list(self._wakers):
            relay.wake()


class _Wakeable(Protocol):
    """What an outbox wakes: a relay (``OutboxRelay.wake``)."""

    def wake(self) -> None: ...


def _wake_pending(session: Session) -> None:
    pending: set[Outbox] = session.info.get(_PENDING_KEY) or set()
    outboxes = list(pending)
    pending.clear()
    for outbox in outboxes:
        outbox._wake()


def _forget_pending(session: Session) -> None:
    pending: set[Outbox] | None = session.info.get(_PENDING_KEY)
    if pending:
        pending.clear()
