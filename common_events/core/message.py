"""What a listener's handler gets besides the event: the delivery and its ``ack()``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from common_events.transports.base import TransportMessage


class Message:
    """One delivery of an event to a listener.

    ``data`` is the raw payload as it came off the wire. Acknowledge with
    ``await msg.ack()`` once the work is done; a message left unacknowledged comes back
    after the listener's ``ack_wait``.
    """

    __slots__ = ("_acked", "_raw", "_started")

    _started: float
    """When the listener took the delivery (``time.monotonic()``), for its heartbeat."""

    def __init__(self, raw: TransportMessage) -> None:
        self._raw = raw
        self._acked = False

    @property
    def subject(self) -> str:
        return self._raw.subject

    @property
    def data(self) -> bytes:
        return self._raw.data

    @property
    def sequence(self) -> int:
        return self._raw.sequence

    @property
    def redelivered(self) -> bool:
        return self._raw.redelivered

    @property
    def delivery_count(self) -> int:
        """1 on the first delivery, 2 on the first redelivery, and so on."""
        return self._raw.delivery_count

    @property
    def timestamp(self) -> datetime:
        """When the broker stored the message (UTC)."""
        return self._raw.timestamp

    @property
    def headers(self) -> Mapping[str, str]:
        """Transport metadata where the transport has headers (JetStream); else empty."""
        return self._raw.headers

    @property
    def acked(self) -> bool:
        return self._acked

    async def ack(self) -> None:
        """Acknowledge: the broker will not deliver this message again. Idempotent."""
        if not self._acked:
            await self._raw.ack()
            self._acked = True

    async def in_progress(self) -> bool:
        """Tell the broker the handler is still working, so ``ack_wait`` starts again.

        The listener already does this every ``ack_wait / 3`` while a handler runs;
        call it yourself only to be sure before a long step. ``False`` where the broker
        cannot be told (NATS Streaming): there, raise the listener's ``ack_wait``.
        """
        return await self._raw.in_progress()

    def __repr__(self) -> str:
        return (
            f"Message(subject={self.subject!r}, sequence={self.sequence}, "
            f"delivery_count={self.delivery_count}, acked={self._acked})"
        )
