"""A poison payload the broker accepted is dead-lettered even when a record carrying it
would be larger than the server's maximum payload, on every broker, and valid events
behind a flood of them are handled.

Before the dead-letter message was fitted to the server's limit, these failed on
JetStream and NATS Streaming: the record's publish was refused (``maximum payload
exceeded``), the message was never dead-lettered, and 16 of them held every in-flight
slot so that the valid events behind them were never handled.
"""

from __future__ import annotations

from common_events import encode_event
from common_events.core.codec import DeadLetterForm, DeadLetterReason, decode_dead_letter
from tests.deadletter.conftest import ConnectBus
from tests.deadletter.support import (
    KB,
    SUBJECT,
    DeadLetterReader,
    Recording,
    binary_poison,
    escaped_poison,
    plain_poison,
    poison_flood,
    publish_raw,
    ticket,
)

OVERSIZED = {
    "binary-800KB": binary_poison(800 * KB),
    "escaped-300KB": escaped_poison(300 * KB),
    "escaped-900KB": escaped_poison(900 * KB, seed=7),
    "plain-900KB": plain_poison(900 * KB),
}


async def test_each_kind_of_oversized_poison_is_dead_lettered(connect_bus: ConnectBus) -> None:
    bus = await connect_bus()
    reader = DeadLetterReader()
    await reader.start(bus)
    listener = await Recording(bus).listen()

    await publish_raw(bus, list(OVERSIZED.values()))

    await reader.wait_for(len(OVERSIZED), within=15)
    await listener.close()
    records = []
    for data, headers in reader.messages:
        assert len(data) + sum(len(k) + len(v) + 4 for k, v in headers.items()) < 1024 * 1024
        record = decode_dead_letter(data, headers)
        assert (record.subject, record.reason) == (SUBJECT, DeadLetterReason.INVALID_JSON)
        records.append(record)
    forms = {outcome.published.form for outcome in listener.outcomes}
    for original in OVERSIZED.values():
        (record,) = [record for record in records if record.describes(original)]
        assert record.payload_size == len(original)
        if bus.transport.carries_headers or original == OVERSIZED["plain-900KB"]:
            # JetStream and memory: the original travels unchanged, the record in
            # headers; a plain-text one still fits inline everywhere.
            assert record.original_payload() == original
        else:
            # NATS Streaming: its size, SHA-256, channel and sequence, marked truncated.
            assert record.truncated and record.payload is None
    if bus.transport.carries_headers:
        assert forms == {DeadLetterForm.HEADERS, DeadLetterForm.INLINE}
    else:
        assert forms == {DeadLetterForm.TRUNCATED, DeadLetterForm.INLINE}


async def test_valid_events_behind_a_flood_of_oversized_poison_are_handled(
    connect_bus: ConnectBus,
) -> None:
    bus = await connect_bus()
    reader = DeadLetterReader()
    await reader.start(bus)
    flood = poison_flood(17)  # more than max_in_flight (16)
    await publish_raw(bus, flood)
    await publish_raw(bus, [encode_event(ticket(number)) for number in range(5)])

    listener = await Recording(bus).listen()

    await listener.wait_until(lambda: len(listener.handled) == 5, within=15)
    await reader.wait_for(len(flood), within=15)
    await listener.close()
    assert sorted(listener.handled) == [f"t{number}" for number in range(5)]
    records = [decode_dead_letter(data, headers) for data, headers in reader.messages]
    for original in flood:
        assert sum(record.describes(original) for record in records) == 1
