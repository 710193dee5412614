"""Events to bytes and back, and the dead-letter record: the one wire codec of the core.

The payload is the event's camelCase JSON and nothing else (DESIGN.md, wire format).
A message that can never become an event, or that failed on every allowed delivery, is
republished to ``dead-letter:<subject>`` as a ``DeadLetter`` record and acknowledged,
so it is neither retried forever nor dropped silently.

The dead-letter message always fits the server's maximum payload. ``dead_letter_message``
chooses its form (``docs/dead-letters.md``): the record as JSON with the original inside
it when that fits; else, where the transport carries headers, the original bytes
unchanged with the record in a header; else the record without the original (its size,
SHA-256, subject and sequence say which message it was and where it is stored), marked
``truncated``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, TypeVar

from pydantic import ValidationError

from common_events.errors import CommonEventsError
from common_events.events.base import Event, WireModel
from common_events.events.fields import UtcDatetime
from common_events.events.subjects import Subjects

E = TypeVar("E", bound=Event)

DEAD_LETTER_PREFIX = "dead-letter:"

DEAD_LETTER_HEADER = "Common-Events-Dead-Letter"
"""The header that carries the record (ASCII JSON, without the payload) when the original
travels unchanged as the dead-letter message's payload."""

ENVELOPE_RESERVE = 1024
"""Bytes of the server's maximum payload left to the transport's own framing: JetStream's
message-id header, NATS Streaming's protocol frame around the payload (client id, GUID,
subject, inbox) on publish and on delivery."""

HEADER_RECORD_LIMIT = 32 * 1024
"""At most this many bytes of record in the header: JetStream refuses headers over 64 KiB."""

KEPT_ERROR = 1024
"""Characters of error text the record keeps before the original moves out of it."""


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
        # What model_validate_json does, without its wrapper: this runs on every delivery.
        # (Assigned rather than cast(): cast is a call, and this is the hot path.)
        event: E = event_type.__pydantic_validator__.validate_json(data)
        return event
    except ValidationError as error:
        raise decode_error(event_type, error) from error


def decode_error(event_type: type[Event], error: ValidationError) -> EventDecodeError:
    """Why ``error`` (of validating a payload as ``event_type``) means the payload is not
    an event: not JSON at all, or JSON that is not a valid event."""
    details = error.errors()
    invalid_json = any(detail["type"] == "json_invalid" for detail in details)
    problems = tuple(
        f"{'.'.join(str(part) for part in detail['loc']) or 'payload'}: {detail['msg']}"
        for detail in details
    )
    reason: Literal[DeadLetterReason.INVALID_JSON, DeadLetterReason.INVALID_EVENT] = (
        DeadLetterReason.INVALID_JSON if invalid_json else DeadLetterReason.INVALID_EVENT
    )
    return EventDecodeError(event_type, reason, problems, str(error))


class DeadLetterTruncated(CommonEventsError, ValueError):
    """The record does not include the original payload (``DeadLetter.truncated``)."""


class DeadLetter(WireModel):
    """What the dead-letter subject carries (camelCase JSON, like the events).

    ``payload`` is the original payload as received (``payload_encoding`` says how it is
    written), absent when ``truncated``: the original was too large to travel with the
    record, and ``subject`` and ``sequence`` say where the broker stores it,
    ``payload_size`` and ``payload_sha256`` which bytes it holds there. ``payload_size``
    and ``payload_sha256`` are absent from records written before they existed.
    """

    subject: str
    queue_group: str | None = None
    """Absent from the JSON when ``None``, as every absent field is."""
    reason: DeadLetterReason
    error: str
    """The error text; a very long one is cut, and says so at its end."""
    delivery_count: int
    sequence: int
    payload: str | None = None
    payload_encoding: Literal["utf-8", "base64"] | None = None
    payload_size: int | None = None
    payload_sha256: str | None = None
    truncated: bool = False
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
        """The record of ``data``, the original included; ``failed_at`` defaults to now."""
        return cls(
            subject=subject,
            queue_group=queue_group,
            reason=reason,
            error=error,
            delivery_count=delivery_count,
            sequence=sequence,
            failed_at=failed_at if failed_at is not None else datetime.now(UTC),
        ).with_payload(data)

    def with_payload(self, data: bytes) -> DeadLetter:
        """This record carrying ``data`` as its original payload (not truncated)."""
        encoding: Literal["utf-8", "base64"]
        try:
            payload, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(data).decode("ascii"), "base64"
        return self.model_copy(
            update={
                "payload": payload,
                "payload_encoding": encoding,
                "payload_size": len(data),
                "payload_sha256": hashlib.sha256(data).hexdigest(),
                "truncated": False,
            }
        )

    def without_payload(self, *, truncated: bool) -> DeadLetter:
        """This record with its size and SHA-256 but not the original payload."""
        return self.model_copy(
            update={"payload": None, "payload_encoding": None, "truncated": truncated}
        )

    def original_payload(self) -> bytes:
        """The payload exactly as it was received; ``DeadLetterTruncated`` when the record
        does not include it (read it from ``subject`` at ``sequence``)."""
        if self.payload is None:
            size = "" if self.payload_size is None else f"{self.payload_size} bytes, "
            raise DeadLetterTruncated(
                f"the dead letter of {self.subject} #{self.sequence} does not include the "
                f"original payload ({size}sha256 {self.payload_sha256}); the broker stores "
                f"it on {self.subject} at sequence {self.sequence}"
            )
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")

    def describes(self, data: bytes) -> bool:
        """Whether ``data`` is the original this record was made of (same size and
        SHA-256): to check a payload read back from the broker for a truncated record."""
        if self.payload_sha256 is None:
            return self.original_payload() == data
        return (self.payload_size, self.payload_sha256) == (
            len(data),
            hashlib.sha256(data).hexdigest(),
        )


class DeadLetterForm(StrEnum):
    """How a dead-letter message carries its record and the original payload."""

    INLINE = "inline"
    """The payload is the record as JSON, the original inside it (``payload``)."""
    HEADERS = "headers"
    """The payload is the original, unchanged; the record (without it) is the
    ``Common-Events-Dead-Letter`` header."""
    TRUNCATED = "truncated"
    """The payload is the record as JSON without the original (``truncated``)."""


@dataclass(frozen=True, slots=True)
class DeadLetterMessage:
    """What is published on the dead-letter subject, and what its reader gets back."""

    form: DeadLetterForm
    data: bytes
    headers: Mapping[str, str] | None
    record: DeadLetter
    """What ``decode_dead_letter(data, headers)`` gives a reader of this message."""

    @property
    def size(self) -> int:
        """Payload and headers as NATS counts them against its maximum payload."""
        return message_size(self.data, self.headers)


def message_size(data: bytes, headers: Mapping[str, str] | None) -> int:
    """Bytes of a NATS message with these headers, as the server counts them against its
    maximum payload (``NATS/1.0`` line, ``key: value`` lines, blank line, payload)."""
    if not headers:
        return len(data)
    lines = sum(len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items())
    return len(data) + len(b"NATS/1.0\r\n") + lines + len(b"\r\n")


def dead_letter_message(
    record: DeadLetter, *, max_payload: int | None, headers: bool
) -> DeadLetterMessage:
    """The dead-letter message of ``record`` (made with ``DeadLetter.of``) for a server
    whose maximum payload is ``max_payload`` bytes (``None``: no known limit), over a
    transport that carries ``headers`` or not.

    The first form that fits ``max_payload`` less ``ENVELOPE_RESERVE`` is taken: inline,
    then (with headers) the original unchanged with the record in a header, then the
    record truncated. A very long error text is cut to fit. ``ValueError`` when not even
    a truncated record fits (a maximum payload of a few hundred bytes).
    """
    original = record.original_payload()
    if max_payload is None:
        return DeadLetterMessage(DeadLetterForm.INLINE, encode_dead_letter(record), None, record)
    budget = max_payload - ENVELOPE_RESERVE
    if len(original) <= budget:
        # The original grows in the record (JSON escapes, base64), never shrinks.
        fitted = _fit(record, budget, encode_dead_letter, keep=KEPT_ERROR)
        if fitted is not None:
            inline, data = fitted
            return DeadLetterMessage(DeadLetterForm.INLINE, data, None, inline)
    if headers:
        room = min(
            HEADER_RECORD_LIMIT,
            budget - message_size(original, {DEAD_LETTER_HEADER: ""}),
        )
        fitted = _fit(record.without_payload(truncated=False), room, _header_value, keep=0)
        if fitted is not None:
            in_header, value = fitted
            return DeadLetterMessage(
                DeadLetterForm.HEADERS,
                original,
                MappingProxyType({DEAD_LETTER_HEADER: value.decode("ascii")}),
                in_header.with_payload(original),
            )
    fitted = _fit(record.without_payload(truncated=True), budget, encode_dead_letter, keep=0)
    if fitted is None:
        raise ValueError(
            f"a dead-letter record of {record.subject} #{record.sequence} does not fit a "
            f"maximum payload of {max_payload} bytes"
        )
    truncated, data = fitted
    return DeadLetterMessage(DeadLetterForm.TRUNCATED, data, None, truncated)


def _header_value(record: DeadLetter) -> bytes:
    # ASCII JSON: a header value may not hold a line break, and readers may not decode
    # anything but ASCII in headers.
    return json.dumps(
        record.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":")
    ).encode("ascii")


def _cut(error: str, keep: int) -> str:
    return f"{error[:keep]}... [cut: {len(error)} characters in all]"


def _fit(
    record: DeadLetter, budget: int, encode: Callable[[DeadLetter], bytes], *, keep: int
) -> tuple[DeadLetter, bytes] | None:
    """``record`` encoded within ``budget`` bytes, its error cut as far as needed but to
    no fewer than ``keep`` characters; ``None`` when that does not fit."""
    data = encode(record)
    if len(data) <= budget:
        return record, data
    error = record.error
    if len(error) <= keep:
        return None
    without_error = len(encode(record.model_copy(update={"error": ""})))
    kept = len(error)
    while kept > keep:
        # Shrink in proportion to what is over (escapes make characters uneven), and
        # at least by one character each round.
        room = budget - without_error - len(_cut(error, 0))
        kept = max(keep, min(kept - 1, kept * room // max(len(data) - without_error, 1)))
        candidate = record.model_copy(update={"error": _cut(error, kept)})
        data = encode(candidate)
        if len(data) <= budget:
            return candidate, data
    return None


def encode_dead_letter(record: DeadLetter) -> bytes:
    """The record's wire bytes (camelCase JSON, UTF-8)."""
    return record.model_dump_json().encode("utf-8")


def decode_dead_letter(data: bytes, headers: Mapping[str, str] | None = None) -> DeadLetter:
    """The record of a message read from a dead-letter subject, in any of its forms.

    Pass the message's headers: with the record in a header, the payload is the original
    and goes back into the record. A truncated record has no payload
    (``original_payload()`` raises ``DeadLetterTruncated``).
    """
    in_header = headers.get(DEAD_LETTER_HEADER) if headers else None
    if in_header is not None:
        return DeadLetter.model_validate_json(in_header).with_payload(data)
    return DeadLetter.model_validate_json(data)
