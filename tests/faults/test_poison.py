"""A poison flood: payloads no listener can handle, of every kind and of sizes up to the
server's maximum payload, interleaved with valid events, waiting on the broker when a
service starts.

Every valid event is handled (counted by id: lost 0), and every poison payload is
dead-lettered exactly once, with its reason, in a form its reader can check against
what was sent: the original bytes, or on NATS Streaming (and on JetStream for one too
close to the limit for a header beside it) the truncated record with the original's size
and SHA-256. The flood is larger than the listener's ``max_in_flight``, so poison that
could not be dead-lettered would stop the valid events behind it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from common_events import (
    DEAD_LETTER_HEADER,
    Bus,
    DeadLetter,
    DeadLetterReason,
    SubscriptionOptions,
    TicketCreatedEvent,
    dead_letter_subject,
    decode_dead_letter,
)
from common_events.transports.base import TransportMessage
from tests.deadletter.support import binary_poison, escaped_poison, plain_poison
from tests.faults.conftest import BrokerFactory
from tests.faults.ledger import Ledger
from tests.faults.traffic import CountingListener, Publishing, Service

SUBJECT = str(TicketCreatedEvent.subject)
DEAD_LETTERS = dead_letter_subject(SUBJECT)
KB = 1000

HEADROOM = 1024
"""What the largest poison payload leaves of the server's maximum payload, for the
transport's own framing (NATS Streaming's protobuf envelope, JetStream's message id
header)."""
SMALLEST = 2 * KB
VALID_PER_POISON = 3
"""Valid events published before each poison payload."""
VALID_AFTER = 10
"""Valid events published after the flood."""
SETTINGS = {"max_in_flight": 16}
"""Fewer slots than poison payloads: the flood cannot be waited out."""
SETTLE = CountingListener.ack_wait + 0.5
"""After the flood is drained, longer than the listener's ack wait: a poison message
dead-lettered but not acknowledged would be delivered and dead-lettered again."""
DRAIN_BOUND = 60.0


def invalid_event(size: int, seed: int) -> bytes:
    """JSON, but not a ticket event."""
    head, tail = b'{"poison":%d,"padding":"' % seed, b'"}'
    return head + b"p" * (size - len(head) - len(tail)) + tail


def escaped_event(size: int, seed: int) -> bytes:
    """JSON, not a ticket event, its string all escapes (``\\"``, ``\\\\``,
    ``\\u0001``), each escaped again in a record."""
    head, tail = b'{"poison":%d,"padding":"' % seed, b'"}'
    room = size - len(head) - len(tail)
    block = b'\\"\\\\\\u0001'
    body = block * (room // len(block))
    return head + body + b" " * (room - len(body)) + tail


# name: (payload of a size and a seed, the reason it is dead-lettered for)
KINDS: dict[str, tuple[Callable[[int, int], bytes], DeadLetterReason]] = {
    "not JSON": (lambda size, _: plain_poison(size), DeadLetterReason.INVALID_JSON),
    "not UTF-8": (binary_poison, DeadLetterReason.INVALID_JSON),
    "escape-heavy, not JSON": (escaped_poison, DeadLetterReason.INVALID_JSON),
    "invalid event": (invalid_event, DeadLetterReason.INVALID_EVENT),
    "escape-heavy invalid event": (escaped_event, DeadLetterReason.INVALID_EVENT),
}


@dataclass(frozen=True, slots=True)
class Poison:
    kind: str
    data: bytes

    @property
    def reason(self) -> DeadLetterReason:
        return KINDS[self.kind][1]


def poison_flood(per_kind: int, largest: int) -> list[Poison]:
    """``per_kind`` payloads of each kind, from ``SMALLEST`` to ``largest`` bytes (both
    included), in a shuffled but fixed order; no two alike."""
    steps = max(per_kind - 1, 1)
    flood = [
        Poison(kind, make(SMALLEST + (largest - SMALLEST) * step // steps, seed))
        for seed, (kind, (make, _)) in enumerate(KINDS.items())
        for step in range(per_kind)
    ]
    random.Random(10).shuffle(flood)
    assert len({poison.data for poison in flood}) == len(flood)
    return flood


@dataclass(frozen=True, slots=True)
class Received:
    sequence: int
    """The dead-letter message's own sequence."""
    record: DeadLetter
    form: str


class DeadLetters:
    """A reader of the dead-letter subject, as an operator's audit tool subscribes."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.changed = asyncio.Event()

    async def start(self, bus: Bus) -> None:
        await bus.subscribe(
            DEAD_LETTERS,
            self._on_message,
            SubscriptionOptions(durable_name="poison-audit", ack_wait=30, max_in_flight=64),
        )

    async def _on_message(self, message: TransportMessage) -> None:
        record = decode_dead_letter(message.data, message.headers)
        in_header = DEAD_LETTER_HEADER in (message.headers or {})
        form = "truncated" if record.truncated else "headers" if in_header else "inline"
        self.received.append(Received(message.sequence, record, form))
        await message.ack()
        self.changed.set()

    async def wait_for(self, count: int, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                while len(self.received) < count:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True


def describe_sizes(flood: list[Poison], max_payload: int) -> str:
    sizes = sorted(len(poison.data) for poison in flood)
    return f"{sizes[0]} to {sizes[-1]} bytes (max_payload {max_payload})"


@pytest.mark.parametrize(
    "per_kind", [4, pytest.param(40, marks=pytest.mark.faults_full)], ids=lambda n: f"{n}-each"
)
@pytest.mark.parametrize("transport", ["stan", "jetstream"])
async def test_a_poison_flood_up_to_the_maximum_payload(
    broker_factory: BrokerFactory, transport: str, per_kind: int
) -> None:
    broker = await broker_factory(transport, proxy=False)
    bus = await broker.connect()()
    try:
        max_payload = bus.transport.max_payload
        carries_headers = bus.transport.carries_headers
        assert max_payload is not None
        flood = poison_flood(per_kind, largest=max_payload - HEADROOM)
        ledger = Ledger(f"{transport}: poison flood of {len(flood)}")
        dead_letters = DeadLetters()
        await dead_letters.start(bus)
        # The flood waits on the broker, as for a service that was down while a broken
        # producer sent it; then the service starts and drains it.
        publishing = await Publishing(broker.connect(), ledger, workers=0).start()
        try:
            ledger.mark("flood")
            for poison in flood:
                await publishing.burst(VALID_PER_POISON)
                await bus.publish(SUBJECT, poison.data)
            await publishing.burst(VALID_AFTER)
        finally:
            await publishing.stop(within=5)
        ledger.mark("published")
        async with Service(broker.connect(), ledger, settings=SETTINGS) as service:
            drained = await ledger.wait_all_confirmed_delivered(within=DRAIN_BOUND)
            dead_lettered = await dead_letters.wait_for(len(flood), within=DRAIN_BOUND)
            done = ledger.now()
            await asyncio.sleep(SETTLE)  # a second dead letter of any would arrive now
    finally:
        await bus.close()

    forms = [received.form for received in dead_letters.received]
    ledger.note(
        f"poison {len(flood)}: {per_kind} of each of {len(KINDS)} kinds, "
        f"{describe_sizes(flood, max_payload)}, behind {VALID_PER_POISON} valid events "
        f"each; dead-lettered {len(dead_letters.received)} "
        f"({', '.join(f'{forms.count(form)} {form}' for form in sorted(set(forms)))})"
    )
    ledger.note(
        f"published in {ledger.marks['published'] - ledger.marks['flood']:.2f}s, "
        f"drained {done - ledger.marks['published']:.2f}s after the service started; "
        f"service restarts {service.restarts}"
    )
    report = ledger.report()
    expected_valid = len(flood) * VALID_PER_POISON + VALID_AFTER
    assert report.confirmed == expected_valid and report.failed == 0, report.line()
    assert drained and report.lost == 0, f"not handled: {sorted(ledger.lost_ids())}"
    assert report.doubled == 0 and service.restarts == 0, report.line()
    assert dead_lettered, report.line()

    # Exactly once each, with its reason, and checkable against what was sent.
    received = dead_letters.received
    assert len({r.sequence for r in received}) == len(received) == len(flood), report.line()
    by_digest: dict[tuple[int | None, str | None], list[Received]] = defaultdict(list)
    for r in received:
        by_digest[r.record.payload_size, r.record.payload_sha256].append(r)
    for index, poison in enumerate(flood):
        digest = (len(poison.data), hashlib.sha256(poison.data).hexdigest())
        matches = [r for r in by_digest[digest] if r.record.describes(poison.data)]
        assert len(matches) == 1, (
            f"{poison.kind} of {len(poison.data)} bytes dead-lettered {len(matches)} times"
        )
        record = matches[0].record
        assert (record.subject, record.reason) == (SUBJECT, poison.reason), record
        assert record.payload_size == len(poison.data)
        # Where the broker stores the original: after the valid events before it (on
        # JetStream nothing else was written to the stream before the service started).
        assert record.sequence == (index + 1) * (VALID_PER_POISON + 1), record.sequence
        if record.truncated:
            assert record.payload is None
        else:
            assert record.original_payload() == poison.data
    if carries_headers:
        assert "headers" in forms
    else:
        # The largest do not fit a record on NATS Streaming, which has no headers.
        assert "truncated" in forms and "headers" not in forms
