"""The dead-letter record: where messages that can never succeed go, with the reason.

A message that is not valid JSON, not a valid event, or past ``max_deliveries`` is
republished to ``dead-letter:<subject>`` as this JSON and then acknowledged, so it is
neither retried forever nor dropped silently.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from common_events.events.base import WireModel
from common_events.events.fields import UtcDatetime

DEAD_LETTER_PREFIX = "dead-letter:"


def dead_letter_subject(subject: str) -> str:
    """The dead-letter subject of ``subject``: ``dead-letter:ticket:created``."""
    return f"{DEAD_LETTER_PREFIX}{subject}"


class DeadLetterReason(StrEnum):
    INVALID_JSON = "invalid_json"
    """The payload is not UTF-8 JSON."""
    INVALID_EVENT = "invalid_event"
    """The payload is JSON but not a valid event of the subject."""
    MAX_DELIVERIES = "max_deliveries"
    """The handler failed (or raised ``OutOfOrder``) on every allowed delivery."""


class DeadLetter(WireModel):
    """What the dead-letter subject carries (camelCase JSON, like the events)."""

    subject: str
    queue_group: str | None
    reason: DeadLetterReason
    error: str
    delivery_count: int
    sequence: int
    payload: str
    payload_encoding: Literal["utf-8", "base64"]
    failed_at: UtcDatetime

    @classmethod
    def of(
        cls,
        *,
        subject: str,
        queue_group: str | None,
        reason: DeadLetterReason,
        error: str,
        delivery_count: int,
        sequence: int,
        data: bytes,
    ) -> DeadLetter:
        encoding: Literal["utf-8", "base64"]
        try:
            payload, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(data).decode("ascii"), "base64"
        return cls(
            subject=subject,
            queue_group=queue_group,
            reason=reason,
            error=error,
            delivery_count=delivery_count,
            sequence=sequence,
            payload=payload,
            payload_encoding=encoding,
            failed_at=datetime.now(UTC),
        )

    def original_payload(self) -> bytes:
        """The payload exactly as it was received."""
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")
