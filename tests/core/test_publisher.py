"""Publishing: the wire bytes, the broker's confirmation, and the wrong event type."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from common_events import (
    BatchPublishError,
    Bus,
    OrderCreatedEvent,
    PublishAck,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
    TransportClosed,
    connect,
)
from common_events.transports.memory import MemoryTransport


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with await connect("memory://") as bus:
        yield bus


def stored(bus: Bus, subject: str) -> list[bytes]:
    assert isinstance(bus.transport, MemoryTransport)
    return [message.data for message in bus.transport.broker.messages(subject)]


async def test_publish_sends_the_wire_json_and_returns_the_confirmation(bus: Bus) -> None:
    event = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")
    ack = await TicketCreatedPublisher(bus).publish(event)
    assert ack == PublishAck(subject="ticket:created", sequence=1)
    assert stored(bus, "ticket:created") == [
        b'{"id":"t1","version":0,"title":"Concert","price":20,"userId":"u1"}'
    ]
    second = await TicketCreatedPublisher(bus).publish(event.model_copy(update={"version": 1}))
    assert second.sequence == 2


async def test_publishing_another_event_type_raises_before_sending(bus: Bus) -> None:
    publisher = TicketCreatedPublisher(bus)
    other = TicketUpdatedEvent(id="t1", version=1, title="x", price=1, user_id="u1")
    with pytest.raises(TypeError) as caught:
        await publisher.publish(other)  # type: ignore[arg-type]
    assert "TicketCreatedEvent" in str(caught.value) and "TicketUpdatedEvent" in str(caught.value)
    with pytest.raises(TypeError):
        await publisher.publish({"id": "t1"})  # type: ignore[arg-type]
    assert stored(bus, "ticket:created") == []
    assert stored(bus, "ticket:updated") == []


async def test_a_broker_error_raises_from_publish() -> None:
    bus = await connect("memory://")
    await bus.close()
    event = TicketCreatedEvent(id="t1", version=0, title="x", price=1, user_id="u1")
    with pytest.raises(TransportClosed):
        await TicketCreatedPublisher(bus).publish(event)


async def test_order_created_is_written_as_the_orders_service_writes_it(bus: Bus) -> None:
    class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
        pass

    raw = (
        b'{"id":"o1","version":0,"status":"created","userId":"u1",'
        b'"expiresAt":"2026-11-27T06:40:00.000Z","ticket":{"id":"t1","price":20}}'
    )
    await OrderCreatedPublisher(bus).publish(OrderCreatedEvent.model_validate_json(raw))
    (data,) = stored(bus, "order:created")
    assert data == raw
    assert json.loads(data)["expiresAt"] == "2026-11-27T06:40:00.000Z"


async def test_publish_many_confirms_every_event_in_order(bus: Bus) -> None:
    events = [
        TicketCreatedEvent(id=f"t{n}", version=0, title="x", price=n, user_id="u")
        for n in range(50)
    ]
    acks = await TicketCreatedPublisher(bus).publish_many(events)
    assert [ack.sequence for ack in acks] == list(range(1, 51))
    assert stored(bus, "ticket:created") == [e.model_dump_json().encode() for e in events]


async def test_publish_many_checks_every_event_before_sending(bus: Bus) -> None:
    good = TicketCreatedEvent(id="t1", version=0, title="x", price=1, user_id="u")
    bad = TicketUpdatedEvent(id="t1", version=1, title="x", price=1, user_id="u")
    with pytest.raises(TypeError, match="TicketUpdatedEvent"):
        await TicketCreatedPublisher(bus).publish_many([good, bad])  # type: ignore[list-item]
    assert stored(bus, "ticket:created") == []


async def test_publish_many_reports_what_was_confirmed_when_the_broker_fails() -> None:
    bus = await connect("memory://")
    events = [
        TicketCreatedEvent(id=f"t{n}", version=0, title="x", price=n, user_id="u")
        for n in range(3)
    ]
    await bus.close()
    with pytest.raises(BatchPublishError) as caught:
        await TicketCreatedPublisher(bus).publish_many(events)
    assert caught.value.acks == [None, None, None]
    assert isinstance(caught.value.__cause__, TransportClosed)
    assert "0 of 3" in str(caught.value)
