"""Where a copied message came from, in JetStream headers, and its de-duplication id.

A message copied from NATS Streaming keeps its payload byte for byte; its origin travels
in three headers (the channel, the STAN sequence and the STAN timestamp in nanoseconds)
and its ``Nats-Msg-Id`` is derived from them, so that the same STAN message published
twice within the stream's duplicate window is stored once. Outside the window, the
copy tools find the last copied sequence in the stream itself (``Stan-Sequence`` of the
last copied message of the subject), which is what makes a re-run exact.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

CHANNEL_HEADER = "Stan-Channel"
SEQUENCE_HEADER = "Stan-Sequence"
TIMESTAMP_HEADER = "Stan-Timestamp"
"""Nanoseconds since the epoch, as NATS Streaming stores it."""
MESSAGE_ID_HEADER = "Nats-Msg-Id"


@dataclass(frozen=True, slots=True)
class Origin:
    """One message of a NATS Streaming channel."""

    cluster_id: str
    channel: str
    sequence: int
    timestamp_ns: int

    @property
    def message_id(self) -> str:
        """The ``Nats-Msg-Id`` of its copy: the same for every attempt, in every run."""
        return f"stan:{self.cluster_id}:{self.channel}:{self.sequence}"

    def headers(self) -> dict[str, str]:
        return {
            MESSAGE_ID_HEADER: self.message_id,
            CHANNEL_HEADER: self.channel,
            SEQUENCE_HEADER: str(self.sequence),
            TIMESTAMP_HEADER: str(self.timestamp_ns),
        }


def origin_sequence(headers: Mapping[str, str] | None) -> int | None:
    """The STAN sequence a stored message was copied from; ``None`` for a message that
    was published on JetStream itself."""
    if not headers:
        return None
    value = headers.get(SEQUENCE_HEADER)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        logger.warning("ignoring a %s header that is not a number: %r", SEQUENCE_HEADER, value)
        return None


class ContentHash:
    """A running SHA-256 over (sequence, length, payload) in STAN order.

    Computed over the STAN channel on one side and over the copies in the stream on the
    other: equal digests mean the same messages, in the same order, byte for byte.
    """

    __slots__ = ("_hash", "count")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def add(self, sequence: int, payload: bytes) -> None:
        self._hash.update(sequence.to_bytes(8, "big"))
        self._hash.update(len(payload).to_bytes(8, "big"))
        self._hash.update(payload)
        self.count += 1

    def copy(self) -> ContentHash:
        twin = ContentHash()
        twin._hash = self._hash.copy()
        twin.count = self.count
        return twin

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()
