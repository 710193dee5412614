"""The listener half of the conformance suite: the core's failure policy and drain on
the transport under test (dead letters, retries, a clean close).

The transport only moves bytes; these tests show that what the core builds on it (a
``Listener`` on a ``Bus``) keeps its promises there too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from common_events.core import (
    Bus,
    DeadLetter,
    DeadLetterReason,
    Listener,
    Message,
    Publisher,
    dead_letter_subject,
    decode_dead_letter,
)
from common_events.events.models import TicketCreatedEvent
from common_events.testing.conformance.collect import Collector, TransportFactory
from common_events.testing.conformance.features import FeatureGate, requires
from common_events.transports.base import SubscriptionOptions

__all__ = ["ListenerConformance"]

logger = logging.getLogger(__name__)

SUBJECT = TicketCreatedEvent.subject.value


def ticket(n: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"t{n}", version=0, title=f"show {n}", price=10 + n, user_id="u1")


class Recorder(Listener[TicketCreatedEvent]):
    """Records and acks every event; with ``fail``, raises on ``t1`` instead; with
    ``hang``, hangs on ``t1`` until that event is set and then gives up without an ack."""

    queue_group = "conformance"
    ack_wait = 1.0
    max_deliveries = 2
    retry_delay = 0.05

    def __init__(
        self,
        bus: Bus,
        *,
        fail: bool = False,
        work: float = 0.0,
        hang: asyncio.Event | None = None,
    ) -> None:
        super().__init__(bus)
        self.fail = fail
        self.work = work
        self.hang = hang
        self.events: list[TicketCreatedEvent] = []
        self.deliveries: list[int] = []
        self.started = asyncio.Event()
        self.changed = asyncio.Event()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.started.set()
        self.deliveries.append(msg.delivery_count)
        if self.fail and event.id == "t1":
            raise RuntimeError("the database is down")
        if self.hang is not None and event.id == "t1":
            await self.hang.wait()
            return
        await asyncio.sleep(self.work)
        await msg.ack()
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, count: int, within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


async def dead_letters(bus: Bus, count: int) -> list[DeadLetter]:
    collector = Collector()
    await bus.subscribe(
        dead_letter_subject(SUBJECT), collector, SubscriptionOptions(durable_name="dl-reader")
    )
    await collector.wait_for_count(count, within=20)
    return [decode_dead_letter(m.data, m.headers) for m in collector.messages]


class ListenerConformance(FeatureGate):
    """What a ``Listener`` on a ``Bus`` over the transport does with good and bad input.

    Subclass it (as ``Test...``), set ``features`` and provide a ``transport_factory``
    fixture; see ``docs/conformance.md``.
    """

    @pytest.mark.asyncio
    async def test_listener_receives_valid_events(
        self, transport_factory: TransportFactory
    ) -> None:
        bus = Bus(await transport_factory())
        listener = await Recorder(bus).listen()
        publisher = TicketCreatedPublisher(bus)
        for n in range(3):
            await publisher.publish(ticket(n))
        await listener.wait_for(3)
        assert listener.events == [ticket(0), ticket(1), ticket(2)]

    @pytest.mark.asyncio
    async def test_invalid_json_goes_to_dead_letter_and_listener_keeps_going(
        self, transport_factory: TransportFactory
    ) -> None:
        bus = Bus(await transport_factory())
        listener = await Recorder(bus).listen()
        await bus.publish(SUBJECT, b"{not json")
        await bus.publish(SUBJECT, b"\xff\xfe binary")
        await TicketCreatedPublisher(bus).publish(ticket(5))
        await listener.wait_for(1)

        letters = await dead_letters(bus, 2)
        assert [letter.reason for letter in letters] == [DeadLetterReason.INVALID_JSON] * 2
        assert letters[0].original_payload() == b"{not json"
        assert letters[0].payload_encoding == "utf-8"
        assert letters[1].original_payload() == b"\xff\xfe binary"
        assert letters[1].payload_encoding == "base64"
        assert letters[0].subject == SUBJECT
        assert letters[0].queue_group == "conformance"
        assert letters[0].delivery_count == 1
        assert letters[0].error
        assert listener.events == [ticket(5)]

    @pytest.mark.asyncio
    async def test_schema_violation_goes_to_dead_letter_with_the_reason(
        self, transport_factory: TransportFactory
    ) -> None:
        bus = Bus(await transport_factory())
        listener = await Recorder(bus).listen()
        bad = b'{"id":"t1","version":0,"title":"x","price":"20","userId":"u"}'
        await bus.publish(SUBJECT, bad)
        await TicketCreatedPublisher(bus).publish(ticket(2))
        await listener.wait_for(1)

        (letter,) = await dead_letters(bus, 1)
        assert letter.reason is DeadLetterReason.INVALID_EVENT
        assert "price" in letter.error
        assert letter.original_payload() == bad
        assert listener.events == [ticket(2)]

    @requires("redelivery_count")
    @pytest.mark.asyncio
    async def test_message_past_max_deliveries_goes_to_dead_letter(
        self, transport_factory: TransportFactory
    ) -> None:
        bus = Bus(await transport_factory())
        listener = await Recorder(bus, fail=True).listen()
        publisher = TicketCreatedPublisher(bus)
        await publisher.publish(ticket(1))
        await publisher.publish(ticket(2))

        (letter,) = await dead_letters(bus, 1)
        await listener.wait_for(1)
        assert letter.reason is DeadLetterReason.MAX_DELIVERIES
        assert letter.delivery_count == Recorder.max_deliveries
        assert "the database is down" in letter.error
        payload: dict[str, Any] = ticket(1).model_dump(mode="json")
        original = TicketCreatedEvent.model_validate_json(letter.original_payload())
        assert original.model_dump(mode="json") == payload
        assert listener.events == [ticket(2)]
        assert listener.deliveries.count(1) >= 2  # t1 and t2 both arrived a first time

    @pytest.mark.asyncio
    async def test_close_lets_a_running_handler_finish_and_its_ack_holds(
        self, transport_factory: TransportFactory
    ) -> None:
        # The listener drains; the transport's subscription close only stops deliveries.
        bus = Bus(await transport_factory())
        listener = await Recorder(bus, work=0.5).listen()
        publisher = TicketCreatedPublisher(bus)
        await publisher.publish(ticket(1))
        async with asyncio.timeout(15):
            await listener.started.wait()

        await listener.close()
        assert listener.events == [ticket(1)], "close() waited for the running handler"

        successor = await Recorder(bus).listen()
        await publisher.publish(ticket(2))
        await successor.wait_for(1)
        # Past the ack wait, an unacknowledged t1 would have come back by now.
        await asyncio.sleep(Recorder.ack_wait * 2)
        assert successor.events == [ticket(2)], "the ack sent while draining was kept"

    @pytest.mark.asyncio
    async def test_a_handler_still_running_after_the_drain_is_abandoned_and_comes_back(
        self, transport_factory: TransportFactory
    ) -> None:
        # The drain is the listener's: closing the transport's subscription does not wait
        # for the handler again, and leaves its message unacknowledged for redelivery.
        release = asyncio.Event()
        bus = Bus(await transport_factory())
        stuck = await Recorder(bus, hang=release).listen()
        publisher = TicketCreatedPublisher(bus)
        await publisher.publish(ticket(1))
        async with asyncio.timeout(15):
            await stuck.started.wait()
        try:
            async with asyncio.timeout(3):
                await stuck.close(drain_timeout=0.2)
            successor = await Recorder(bus).listen()
            await successor.wait_for(1)
            assert successor.events == [ticket(1)]
            assert stuck.events == []
        finally:
            release.set()
