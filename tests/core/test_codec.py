"""The core's codec: events to wire bytes and back, and the dead-letter record."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common_events import Subjects, TicketCreatedEvent
from common_events.core import (
    DeadLetter,
    DeadLetterReason,
    EventDecodeError,
    dead_letter_subject,
    decode_dead_letter,
    decode_event,
    encode_dead_letter,
    encode_event,
    stream_subjects,
)
from common_events.core.codec import (
    DEAD_LETTER_HEADER,
    ENVELOPE_RESERVE,
    HEADER_RECORD_LIMIT,
    DeadLetterForm,
    DeadLetterTruncated,
    dead_letter_message,
)

TICKET = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")


def test_an_event_is_its_camel_case_json_and_nothing_else() -> None:
    data = encode_event(TICKET)

    assert data == b'{"id":"t1","version":0,"title":"Concert","price":20,"userId":"u1"}'
    assert decode_event(TicketCreatedEvent, data) == TICKET


def test_invalid_json_says_so() -> None:
    with pytest.raises(
        EventDecodeError, match="ticket:created payload is not valid JSON"
    ) as caught:
        decode_event(TicketCreatedEvent, b"{not json")

    assert caught.value.reason is DeadLetterReason.INVALID_JSON
    assert isinstance(caught.value, ValueError)


def test_bytes_that_are_not_utf8_are_invalid_json() -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_event(TicketCreatedEvent, b"\xff\xfe binary")

    assert caught.value.reason is DeadLetterReason.INVALID_JSON


def test_an_invalid_event_says_which_field_is_wrong() -> None:
    bad = b'{"id":"t1","version":0,"title":"x","price":"20","userId":"u"}'

    with pytest.raises(
        EventDecodeError, match="is JSON but not a valid TicketCreatedEvent: price: "
    ) as caught:
        decode_event(TicketCreatedEvent, bad)

    assert caught.value.reason is DeadLetterReason.INVALID_EVENT
    assert caught.value.problems[0].startswith("price: ")
    assert caught.value.event_type is TicketCreatedEvent


def test_the_dead_letter_subject_prefixes_the_subject() -> None:
    assert dead_letter_subject("ticket:created") == "dead-letter:ticket:created"


def test_the_stream_subjects_are_every_subject_and_its_dead_letter_subject() -> None:
    subjects = stream_subjects()

    events = [subject.value for subject in Subjects]
    assert list(subjects) == [*events, *(f"dead-letter:{subject}" for subject in events)]


def test_a_dead_letter_record_round_trips_a_binary_payload() -> None:
    record = DeadLetter.of(
        subject="ticket:updated",
        queue_group=None,
        reason=DeadLetterReason.INVALID_JSON,
        error="not JSON",
        delivery_count=1,
        sequence=3,
        data=b"\xff\x00",
    )

    again = decode_dead_letter(encode_dead_letter(record))

    assert again == record
    assert again.payload_encoding == "base64"
    assert again.original_payload() == b"\xff\x00"


def test_the_old_dead_letter_module_still_serves_its_names() -> None:
    from common_events.core import dead_letter

    assert dead_letter.DeadLetter is DeadLetter
    assert dead_letter.dead_letter_subject is dead_letter_subject


# -- the dead-letter message: always within the server's maximum payload ---------------

MIB = 1024 * 1024


def record_of(data: bytes, *, error: str = "not JSON", sequence: int = 3) -> DeadLetter:
    return DeadLetter.of(
        subject="ticket:created",
        queue_group="orders-service",
        reason=DeadLetterReason.INVALID_JSON,
        error=error,
        delivery_count=1,
        sequence=sequence,
        data=data,
        failed_at=datetime(2026, 11, 27, 6, 40, tzinfo=UTC),
    )


def test_a_record_says_the_size_and_sha256_of_the_original() -> None:
    record = record_of(b"{not json")

    assert record.payload_size == 9
    assert record.payload_sha256 == hashlib.sha256(b"{not json").hexdigest()
    assert record.truncated is False
    assert record.describes(b"{not json") and not record.describes(b"{not json!")


def test_a_record_that_fits_travels_inline_as_before() -> None:
    record = record_of(b"{not json")

    message = dead_letter_message(record, max_payload=MIB, headers=True)

    assert message.form is DeadLetterForm.INLINE
    assert message.headers is None
    assert message.data == encode_dead_letter(record)
    assert decode_dead_letter(message.data) == record == message.record


def test_without_a_known_limit_the_record_is_inline() -> None:
    big = b"\xff" * (3 * MIB)

    message = dead_letter_message(record_of(big), max_payload=None, headers=False)

    assert message.form is DeadLetterForm.INLINE
    assert decode_dead_letter(message.data).original_payload() == big


def binary(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def escapes(size: int) -> bytes:
    return (b'"\\\x01\x1f' * (size // 4 + 1))[:size]


@pytest.mark.parametrize(
    "original", [binary(800_000), escapes(300_000), escapes(900_000)], ids=lambda d: len(d)
)
def test_with_headers_an_original_too_big_for_a_record_travels_unchanged(
    original: bytes,
) -> None:
    record = record_of(original, sequence=41)
    assert len(encode_dead_letter(record)) > MIB  # what used to be refused

    message = dead_letter_message(record, max_payload=MIB, headers=True)

    assert message.form is DeadLetterForm.HEADERS
    assert message.data == original
    assert message.size <= MIB - ENVELOPE_RESERVE
    assert message.headers is not None
    (value,) = message.headers.values()
    assert value.isascii() and "\r" not in value and "\n" not in value
    read = decode_dead_letter(message.data, message.headers)
    assert read == record
    assert read.original_payload() == original


@pytest.mark.parametrize(
    "original", [binary(800_000), escapes(300_000), escapes(900_000)], ids=lambda d: len(d)
)
def test_without_headers_an_original_too_big_for_a_record_is_left_out(original: bytes) -> None:
    record = record_of(original, sequence=41)

    message = dead_letter_message(record, max_payload=MIB, headers=False)

    assert message.form is DeadLetterForm.TRUNCATED
    assert message.headers is None
    assert len(message.data) <= MIB - ENVELOPE_RESERVE
    read = decode_dead_letter(message.data)
    assert read == message.record
    assert read.truncated and read.payload is None and read.payload_encoding is None
    assert (read.subject, read.sequence) == ("ticket:created", 41)
    assert read.payload_size == len(original)
    assert read.payload_sha256 == hashlib.sha256(original).hexdigest()
    assert read.describes(original)
    assert (read.reason, read.error) == (record.reason, record.error)
    with pytest.raises(DeadLetterTruncated, match=r"ticket:created at sequence 41"):
        read.original_payload()
    assert b'"truncated":true' in message.data


def test_an_original_at_the_limit_leaves_no_room_for_headers_and_is_left_out() -> None:
    original = b"x" * (MIB - 100)  # accepted by the server: no room for a record beside it

    message = dead_letter_message(record_of(original), max_payload=MIB, headers=True)

    assert message.form is DeadLetterForm.TRUNCATED
    assert decode_dead_letter(message.data).describes(original)


def test_a_huge_error_text_is_cut_and_the_original_kept() -> None:
    error = "ValueError: " + "\x00\"" * 600_000  # 2.4 MB once escaped

    for headers in (True, False):
        message = dead_letter_message(
            record_of(b"{not json", error=error), max_payload=MIB, headers=headers
        )

        assert message.form is DeadLetterForm.INLINE
        assert len(message.data) <= MIB - ENVELOPE_RESERVE
        read = decode_dead_letter(message.data)
        assert read.original_payload() == b"{not json"
        assert read.error.startswith("ValueError: \x00")
        assert read.error.endswith(f"... [cut: {len(error)} characters in all]")


def test_an_error_too_long_for_a_header_is_cut_there() -> None:
    original = binary(900_000)

    message = dead_letter_message(
        record_of(original, error="e" * 200_000), max_payload=MIB, headers=True
    )

    assert message.form is DeadLetterForm.HEADERS
    assert message.headers is not None
    assert len(message.headers[DEAD_LETTER_HEADER]) <= HEADER_RECORD_LIMIT
    assert message.record.error.endswith("... [cut: 200000 characters in all]")


def test_a_maximum_payload_too_small_for_any_record_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not fit a maximum payload of 1100 bytes"):
        dead_letter_message(record_of(b"x" * 5000), max_payload=1100, headers=False)


def test_a_record_of_an_older_version_still_reads() -> None:
    old = (
        b'{"subject":"ticket:created","reason":"invalid_json","error":"e",'
        b'"deliveryCount":1,"sequence":2,"payload":"{x","payloadEncoding":"utf-8",'
        b'"failedAt":"2026-11-27T06:40:00.000Z"}'
    )

    record = decode_dead_letter(old)

    assert record.original_payload() == b"{x"
    assert (record.payload_size, record.payload_sha256, record.truncated) == (None, None, False)
    assert record.describes(b"{x")


@settings(max_examples=60, deadline=None)
@given(
    original=st.one_of(
        st.binary(max_size=6000),
        st.text(alphabet=st.sampled_from('"\\\x00\x1fa\u00e9\u4e2d'), max_size=3000).map(
            str.encode
        ),
    ),
    error=st.text(max_size=3000),
    max_payload=st.integers(min_value=2500, max_value=20_000),
    headers=st.booleans(),
)
def test_every_dead_letter_message_fits_and_reads_back(
    original: bytes, error: str, max_payload: int, headers: bool
) -> None:
    record = record_of(original, error=error)

    message = dead_letter_message(record, max_payload=max_payload, headers=headers)

    assert message.size <= max_payload - ENVELOPE_RESERVE
    assert headers or message.form is not DeadLetterForm.HEADERS
    read = decode_dead_letter(message.data, message.headers)
    assert read == message.record
    assert read.describes(original)
    if message.form is DeadLetterForm.TRUNCATED:
        assert read.truncated
    else:
        assert read.original_payload() == original
