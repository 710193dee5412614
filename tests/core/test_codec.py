"""The core's codec: events to wire bytes and back, and the dead-letter record."""

from __future__ import annotations

import pytest

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
