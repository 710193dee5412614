"""The failure policy through ``Listener`` on every transport: dead letters and retries."""

from __future__ import annotations

import asyncio
from typing import Any

from common_events import (
    DeadLetter,
    DeadLetterReason,
    Listener,
    Message,
    Publisher,
    TicketCreatedEvent,
)
from common_events.core.bus import Bus
from common_events.transports.base import SubscriptionOptions
from tests.support.collect import Collector
from tests.support.factory import TransportFactory

DEAD_LETTERS = "dead-letter:ticket:created"


def ticket(n: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"t{n}", version=0, title=f"show {n}", price=10 + n, user_id="u1")


class Recorder(Listener[TicketCreatedEvent]):
    queue_group = "conformance"
    ack_wait = 1.0
    max_deliveries = 2
    retry_delay = 0.05

    def __init__(self, bus: Bus, *, fail: bool = False) -> None:
        super().__init__(bus)
        self.fail = fail
        self.events: list[TicketCreatedEvent] = []
        self.deliveries: list[int] = []
        self.changed = asyncio.Event()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.deliveries.append(msg.delivery_count)
        if self.fail and event.id == "t1":
            raise RuntimeError("the database is down")
        self.events.append(event)
        await msg.ack()
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


async def dead_letters(bus: Bus, count: int) -> list[DeadLetter]:
    collector = Collector()
    await bus.subscribe(DEAD_LETTERS, collector, SubscriptionOptions(durable_name="dl-reader"))
    await collector.wait_for_count(count, timeout=20)
    return [DeadLetter.model_validate_json(m.data) for m in collector.messages]


async def bus_of(factory: TransportFactory) -> Bus:
    return Bus(await factory())


async def test_listener_receives_valid_events(transport_factory: TransportFactory) -> None:
    bus = await bus_of(transport_factory)
    listener = await Recorder(bus).listen()
    publisher = TicketCreatedPublisher(bus)
    for n in range(3):
        await publisher.publish(ticket(n))
    await listener.wait_for(3)
    assert listener.events == [ticket(0), ticket(1), ticket(2)]


async def test_invalid_json_goes_to_dead_letter_and_listener_keeps_going(
    transport_factory: TransportFactory,
) -> None:
    bus = await bus_of(transport_factory)
    listener = await Recorder(bus).listen()
    await bus.publish("ticket:created", b"{not json")
    await bus.publish("ticket:created", b"\xff\xfe binary")
    await TicketCreatedPublisher(bus).publish(ticket(5))
    await listener.wait_for(1)

    letters = await dead_letters(bus, 2)
    assert [letter.reason for letter in letters] == [DeadLetterReason.INVALID_JSON] * 2
    assert letters[0].original_payload() == b"{not json"
    assert letters[0].payload_encoding == "utf-8"
    assert letters[1].original_payload() == b"\xff\xfe binary"
    assert letters[1].payload_encoding == "base64"
    assert letters[0].subject == "ticket:created"
    assert letters[0].queue_group == "conformance"
    assert letters[0].delivery_count == 1
    assert letters[0].error
    assert listener.events == [ticket(5)]


async def test_schema_violation_goes_to_dead_letter_with_the_reason(
    transport_factory: TransportFactory,
) -> None:
    bus = await bus_of(transport_factory)
    listener = await Recorder(bus).listen()
    bad = b'{"id":"t1","version":0,"title":"x","price":"20","userId":"u"}'
    await bus.publish("ticket:created", bad)
    await TicketCreatedPublisher(bus).publish(ticket(2))
    await listener.wait_for(1)

    (letter,) = await dead_letters(bus, 1)
    assert letter.reason is DeadLetterReason.INVALID_EVENT
    assert "price" in letter.error
    assert letter.original_payload() == bad
    assert listener.events == [ticket(2)]


async def test_message_past_max_deliveries_goes_to_dead_letter(
    transport_factory: TransportFactory,
) -> None:
    bus = await bus_of(transport_factory)
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
    assert (
        TicketCreatedEvent.model_validate_json(letter.original_payload()).model_dump(mode="json")
        == payload
    )
    assert listener.events == [ticket(2)]
    assert listener.deliveries.count(1) >= 2  # t1 and t2 both arrived a first time
