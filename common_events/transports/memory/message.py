"""The messages of the in-memory broker: ``StoredMessage`` as the broker keeps it,
``_Pending`` while a subscription waits for its acknowledgement, and ``MemoryMessage``,
one delivery of it to one subscriber member, whose ``ack``/``nak`` go back to the
subscription state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common_events.transports.memory.state import _Member, _SubscriptionState


def message_size(data: bytes, headers: Mapping[str, str] | None) -> int:
    """Bytes of a message as nats-server counts them against its maximum payload."""
    if not headers:
        return len(data)
    lines = sum(len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items())
    return len(data) + len(b"NATS/1.0\r\n") + lines + len(b"\r\n")


@dataclass(frozen=True, slots=True)
class StoredMessage:
    subject: str
    sequence: int
    data: bytes
    timestamp: datetime
    headers: Mapping[str, str]


@dataclass(slots=True)
class _Pending:
    """A delivered, unacknowledged message of one subscription state."""

    message: StoredMessage
    deliveries: int
    member: _Member | None
    due: float  # loop time at which it is delivered (again)


class MemoryMessage:
    """One delivery of a stored message to one subscriber member."""

    __slots__ = ("_delivery_count", "_done", "_pending", "_state", "_stored")

    def __init__(self, state: _SubscriptionState, pending: _Pending) -> None:
        self._state = state
        self._pending = pending
        self._stored = pending.message
        self._delivery_count = pending.deliveries
        self._done = False

    @property
    def subject(self) -> str:
        return self._stored.subject

    @property
    def data(self) -> bytes:
        return self._stored.data

    @property
    def sequence(self) -> int:
        return self._stored.sequence

    @property
    def redelivered(self) -> bool:
        return self._delivery_count > 1

    @property
    def delivery_count(self) -> int:
        return self._delivery_count

    @property
    def timestamp(self) -> datetime:
        return self._stored.timestamp

    @property
    def headers(self) -> Mapping[str, str]:
        return self._stored.headers

    async def ack(self) -> None:
        if not self._done:
            self._done = True
            self._state.ack(self._pending)

    async def nak(self, delay: float | None = None) -> None:
        if not self._done:
            self._done = True
            self._state.nak(self._pending, self._delivery_count, delay or 0.0)

    async def in_progress(self) -> bool:
        """Restart this delivery's ``ack_wait``; ``False`` once it ran out already."""
        return self._done or self._state.touch(self._pending, self._delivery_count)

    def __repr__(self) -> str:
        return (
            f"MemoryMessage(subject={self.subject!r}, sequence={self.sequence}, "
            f"delivery_count={self.delivery_count})"
        )
