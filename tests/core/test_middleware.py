"""Middlewares on the bus: their order, what they see, and what their errors do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common_events import Publisher, PublishError, TicketCreatedEvent, connect
from common_events.core import Bus, Middleware, PublishAck, PublishContext, PublishNext
from common_events.transports.memory import MemoryTransport

EVENT = TicketCreatedEvent(id="t1", version=0, title="concert", price=20, user_id="u1")


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class Recorder(Middleware):
    """Records when it is entered and left, and adds a header of its own."""

    def __init__(self, name: str, trail: list[str]) -> None:
        self.name = name
        self.trail = trail
        self.seen: list[PublishContext] = []

    async def publish(self, context: PublishContext, call_next: PublishNext) -> PublishAck:
        self.seen.append(context)
        self.trail.append(f"{self.name} in")
        context.headers[f"x-{self.name}"] = str(len(context.headers))
        ack = await call_next(context)
        self.trail.append(f"{self.name} out")
        return ack


@pytest.fixture
def trail() -> list[str]:
    return []


@pytest.fixture
async def bus(trail: list[str]) -> AsyncIterator[Bus]:
    middleware = [Recorder("outer", trail), Recorder("inner", trail)]
    async with await connect("memory://", middleware=middleware) as bus:
        yield bus


def stored(bus: Bus, subject: str = "ticket:created") -> tuple[object, ...]:
    transport = bus.transport
    assert isinstance(transport, MemoryTransport)
    return transport.broker.messages(subject)


async def test_the_first_middleware_is_outermost_and_headers_they_add_travel(
    bus: Bus, trail: list[str]
) -> None:
    ack = await TicketCreatedPublisher(bus).publish(EVENT, headers={"x-caller": "c"})

    assert trail == ["outer in", "inner in", "inner out", "outer out"]
    (message,) = stored(bus)
    assert dict(message.headers) == {"x-caller": "c", "x-outer": "1", "x-inner": "2"}  # type: ignore[attr-defined]
    assert ack.sequence == 1


async def test_a_middleware_sees_the_subject_the_event_and_the_wire_bytes(bus: Bus) -> None:
    await TicketCreatedPublisher(bus).publish(EVENT)
    await bus.publish("ticket:created", b"raw")

    outer = bus.middleware[0]
    assert isinstance(outer, Recorder)
    first, raw = outer.seen
    assert (first.subject, first.event, first.data) == (
        "ticket:created",
        EVENT,
        EVENT.model_dump_json().encode(),
    )
    assert (raw.event, raw.data) == (None, b"raw")


async def test_publish_many_runs_every_event_through_the_middlewares(
    bus: Bus, trail: list[str]
) -> None:
    events = [EVENT.model_copy(update={"version": n}) for n in range(5)]

    acks = await TicketCreatedPublisher(bus).publish_many(events)

    assert [ack.sequence for ack in acks] == [1, 2, 3, 4, 5]
    outer = bus.middleware[0]
    assert isinstance(outer, Recorder)
    assert sorted(c.event.version for c in outer.seen if c.event is not None) == list(range(5))  # type: ignore[attr-defined]
    assert all("x-inner" in m.headers for m in stored(bus))  # type: ignore[attr-defined]


async def test_a_middleware_raising_before_sending_fails_the_publish_and_sends_nothing() -> None:
    class Refuses(Middleware):
        async def publish(self, context: PublishContext, call_next: PublishNext) -> PublishAck:
            raise PublishError("not today")

    async with await connect("memory://", middleware=[Refuses()]) as bus:
        with pytest.raises(PublishError, match="not today"):
            await TicketCreatedPublisher(bus).publish(EVENT)
        assert stored(bus) == ()


async def test_a_middleware_that_raises_after_the_confirmation_does_not_undo_the_publish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailsLate(Middleware):
        async def publish(self, context: PublishContext, call_next: PublishNext) -> PublishAck:
            await call_next(context)
            raise RuntimeError("metrics backend down")

    async with await connect("memory://", middleware=[FailsLate()]) as bus:
        ack = await TicketCreatedPublisher(bus).publish(EVENT)

        assert ack.sequence == 1 and len(stored(bus)) == 1
    (record,) = [r for r in caplog.records if "FailsLate" in r.getMessage()]
    assert "RuntimeError: metrics backend down" in record.getMessage()


async def test_middleware_takes_a_list_of_middleware_objects() -> None:
    with pytest.raises(TypeError, match="list of Middleware"):
        await connect("memory://", middleware=Middleware())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not function"):
        Bus(MemoryTransport(), middleware=[lambda: None])  # type: ignore[list-item]


async def test_a_bus_without_publish_middlewares_calls_the_transport_directly() -> None:
    class HandleOnly(Middleware):
        pass

    async with await connect("memory://", middleware=[HandleOnly()]) as bus:
        assert bus._publish_chain is None
        assert (await TicketCreatedPublisher(bus).publish(EVENT)).sequence == 1
