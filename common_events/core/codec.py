"""Events to bytes and back, and the dead-letter record: the one wire codec of the core.

The payload is the event's camelCase JSON and nothing else (DESIGN.md, wire format).
A message that can never become an event, or that failed on every allowed delivery, is
republished to ``dead-letter:<subject>`` as a ``DeadLetter`` record and acknowledged,
so it is neither retried forever nor dropped silently.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, TypeVar

from pydantic import ValidationError

from common_events.errors import CommonEventsError
from common_events.events.base import Event, WireModel
from common_events.events.fields import UtcDatetime
from common_events.events.subjects import Subjects

E = TypeVar("E", bound=Event)

DEAD_LETTER_PREFIX = "dead-letter:"


def dead_letter_subject(subject: str) -> str:
    """The dead-letter subject of ``subject``: ``dead-letter:ticket:created``."""
    return f"{DEAD_LETTER_PREFIX}{subject}"


def stream_subjects() -> tuple[str, ...]:
    """Every event subject, then each one's dead-letter subject: what a broker that
    stores messages (a JetStream stream) must store."""
    subjects = tuple(subject.value for subject in Subjects)
    return (*subjects, *(dead_letter_subject(subject) for subject in subjects))


class DeadLetterReason(StrEnum):
    INVALID_JSON = "invalid_json"
    """The payload is not UTF-8 JSON."""
    INVALID_EVENT = "invalid_event"
    """The payload is JSON but not a valid event of the subject."""
    MAX_DELIVERIES = "max_deliveries"
    """The handler failed (or raised ``OutOfOrder``) on every allowed delivery."""


class EventDecodeError(CommonEventsError, ValueError):
    """A payload that is not an event of the expected type, and why.

    ``reason`` says which: ``INVALID_JSON`` (not UTF-8 JSON at all) or
    ``INVALID_EVENT`` (JSON, but not a valid event). ``problems`` lists each problem as
    ``"<field>: <message>"``; ``detail`` is the validator's full text.
    """

    def __init__(
        self,
        event_type: type[Event],
        reason: Literal[DeadLetterReason.INVALID_JSON, DeadLetterReason.INVALID_EVENT],
        problems: tuple[str, ...],
        detail: str,
    ) -> None:
        what = (
            "is not valid JSON"
            if reason is DeadLetterReason.INVALID_JSON
            else f"is JSON but not a valid {event_type.__name__}"
        )
        listed = "; ".join(problems)
        super().__init__(
            f"{event_type.subject.value} payload {what}{': ' + listed if listed else ''}"
        )
        self.event_type = event_type
        self.reason = reason
        self.problems = problems
        self.detail = detail


def encode_event(event: Event) -> bytes:
    """The event's wire bytes: its camelCase JSON, UTF-8."""
    return event.model_dump_json().encode("utf-8")


def decode_event(event_type: type[E], data: bytes) -> E:
    """Validate ``data`` as an ``event_type`` event; ``EventDecodeError`` says why not."""
    try:
        return event_type.model_validate_json(data)
    except ValidationError as error:
        details = error.errors()
        invalid_json = any(detail["type"] == "json_invalid" for detail in details)
        problems = tuple(
            f"{'.'.join(str(part) for part in detail['loc']) or 'payload'}: {detail['msg']}"
            for detail in details
        )
        reason: Literal[DeadLetterReason.INVALID_JSON, DeadLetterReason.INVALID_EVENT] = (
            DeadLetterReason.INVALID_JSON if invalid_json else DeadLetterReason.INVALID_EVENT
        )
        raise EventDecodeError(event_type, reason, problems, str(error)) from error


class DeadLetter(WireModel):
    """What the dead-letter subject carries (camelCase JSON, like the events)."""

    subject: str
    queue_group: str | None = None
    """Absent from the JSON when ``None``, as every absent field is."""
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
        failed_at: datetime | None = None,
    ) -> DeadLetter:
        """The record of ``data``; ``failed_at`` defaults to now."""
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
            failed_at=failed_at if failed_at is not None else datetime.now(UTC),
        )

    def original_payload(self) -> bytes:
        """The payload exactly as it was received."""
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")


def encode_dead_letter(record: DeadLetter) -> bytes:
    """The record's wire bytes (camelCase JSON, UTF-8)."""
    return record.model_dump_json().encode("utf-8")


def decode_dead_letter(data: bytes) -> DeadLetter:
    """A record read back from a dead-letter subject."""
    return DeadLetter.model_validate_json(data)
