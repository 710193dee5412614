"""Middlewares on the bus: their order, what they see, and what their errors do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from common_events import (
    Listener,
    Message,
    Publisher,
    PublishError,
    TicketCreatedEvent,
    connect,
)
from common_events.core import (
    Acked,
    Bus,
    DeadLettered,
    DeliveryContext,
    EventDecodeError,
    HandleNext,
    Middleware,
    NotAcked,
    Outcome,
    PublishAck,
    PublishContext,
    PublishNext,
    RetryLater,
    outcome_error,
    outcome_label,
)
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.memory import MemoryTransport
from tests.core.test_listener_outcomes import StubMessage

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


# -- handling ---------------------------------------------------------------------------


class TicketCreatedListener(Listener[TicketCreatedEvent]):
    queue_group = "payments-service"
    max_deliveries = 3
    retry_delay = 0.25

    def __init__(self, bus: Bus, *, raises: Exception | None = None) -> None:
        super().__init__(bus)
        self.raises = raises
        self.handled: list[TicketCreatedEvent] = []

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.handled.append(event)
        if self.raises is not None:
            raise self.raises
        await msg.ack()


class Observer(Middleware):
    """Records what it sees of each delivery, before and after ``call_next``."""

    def __init__(self, name: str, trail: list[str]) -> None:
        self.name = name
        self.trail = trail
        self.before: list[tuple[object, ...]] = []
        self.after: list[tuple[DeliveryContext, Outcome]] = []

    async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
        self.trail.append(f"{self.name} in")
        self.before.append((context.event, context.handler_seconds))
        outcome = await call_next(context)
        self.after.append((context, outcome))
        self.trail.append(f"{self.name} out")
        return outcome


def created(data: bytes = EVENT.model_dump_json().encode(), **kwargs: Any) -> StubMessage:
    message = StubMessage(data, **kwargs)
    message.subject = "ticket:created"
    return message


async def observed_bus(*middleware: Middleware) -> Bus:
    return await connect("memory://", middleware=list(middleware))


async def test_a_delivery_goes_through_the_middlewares_first_one_outermost() -> None:
    trail: list[str] = []
    outer, inner = Observer("outer", trail), Observer("inner", trail)
    async with await observed_bus(outer, inner) as bus:
        listener = TicketCreatedListener(bus)
        message = created(delivery_count=2)
        message.headers = {"traceparent": "00-abc-def-01"}

        outcome = await listener.handle_delivery(message)

    assert outcome == Acked()
    assert trail == ["outer in", "inner in", "inner out", "outer out"]
    assert outer.before == [(None, None)]
    ((context, seen),) = outer.after
    assert seen == outcome
    assert (context.subject, context.sequence, context.delivery_count) == ("ticket:created", 5, 2)
    assert dict(context.headers) == {"traceparent": "00-abc-def-01"}
    assert (context.listener, context.listener_name) == (listener, "TicketCreatedListener")
    assert context.queue_group == "payments-service"
    assert context.event == EVENT and context.data == EVENT.model_dump_json().encode()
    assert context.handler_seconds is not None and context.handler_seconds >= 0
    assert outcome_label(outcome) == "acked" and outcome_error(outcome) is None


async def test_a_middleware_sees_the_raw_bytes_and_the_reason_of_an_invalid_payload() -> None:
    observer = Observer("only", [])
    async with await observed_bus(observer) as bus:
        outcome = await TicketCreatedListener(bus).handle_delivery(created(b"{not json"))

    ((context, seen),) = observer.after
    assert isinstance(seen, DeadLettered) and seen is outcome
    assert context.event is None and context.data == b"{not json"
    assert context.handler_seconds is None
    assert isinstance(outcome_error(seen), EventDecodeError)
    assert outcome_label(seen) == "dead_lettered"


async def test_a_middleware_sees_the_handlers_exception_in_the_outcome() -> None:
    observer = Observer("only", [])
    error = ConnectionError("database unavailable")
    async with await observed_bus(observer) as bus:
        outcome = await TicketCreatedListener(bus, raises=error).handle_delivery(created())

    assert outcome == RetryLater(0.25, error)
    assert outcome_error(outcome) is error and outcome_label(outcome) == "retried"
    ((context, _),) = observer.after
    assert context.event == EVENT and context.handler_seconds is not None


class RaisesBefore(Middleware):
    async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
        raise RuntimeError("tracer misconfigured")


async def test_a_middleware_raising_before_the_handler_is_a_handler_failure_retried() -> None:
    observer = Observer("outer", [])
    async with await observed_bus(observer, RaisesBefore()) as bus:
        listener = TicketCreatedListener(bus)
        message = created()

        outcome = await listener.handle_delivery(message)

    assert isinstance(outcome, RetryLater) and outcome.delay == 0.25
    assert str(outcome.error) == "tracer misconfigured"
    assert message.naks == [0.25] and message.acks == 0
    assert listener.handled == []
    assert observer.after[0][1] is outcome


async def test_on_its_last_delivery_a_middleware_failure_dead_letters_the_message() -> None:
    async with await observed_bus(RaisesBefore()) as bus:
        message = created(delivery_count=3)

        outcome = await TicketCreatedListener(bus).handle_delivery(message)

        assert isinstance(outcome, DeadLettered)
        assert "RuntimeError: tracer misconfigured" in outcome.record.error
        assert message.acks == 1
        assert len(stored(bus, "dead-letter:ticket:created")) == 1


async def test_a_middleware_raising_after_the_delivery_was_settled_does_not_change_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class RaisesAfter(Middleware):
        async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
            await call_next(context)
            raise RuntimeError("metrics backend down")

    async with await observed_bus(RaisesAfter()) as bus:
        message = created()

        outcome = await TicketCreatedListener(bus).handle_delivery(message)

    assert outcome == Acked() and message.acks == 1 and message.naks == []
    (record,) = [r for r in caplog.records if "RaisesAfter" in r.getMessage()]
    assert "RuntimeError: metrics backend down" in record.getMessage()
    assert record.sequence == 5  # type: ignore[attr-defined]


async def test_call_next_runs_the_delivery_once_and_the_real_outcome_is_returned() -> None:
    class Twice(Middleware):
        async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
            first = await call_next(context)
            assert await call_next(context) is first
            return NotAcked()  # not what happened: the listener does not take it

    async with await observed_bus(Twice()) as bus:
        listener = TicketCreatedListener(bus)

        outcome = await listener.handle_delivery(created())

    assert outcome == Acked() and len(listener.handled) == 1


async def test_a_middleware_that_does_not_go_on_leaves_the_message_unacknowledged() -> None:
    class Drops(Middleware):
        async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
            return Acked()

    async with await observed_bus(Drops()) as bus:
        listener = TicketCreatedListener(bus)
        message = created()

        outcome = await listener.handle_delivery(message)

    assert outcome == NotAcked()
    assert listener.handled == [] and message.acks == 0


async def test_on_jetstream_headers_a_publish_middleware_adds_reach_the_handle_middleware(
    nats_server: EmbeddedNatsServer,
) -> None:
    class Stamp(Middleware):
        def __init__(self) -> None:
            self.seen: list[tuple[Mapping[str, str], Outcome]] = []
            self.done = asyncio.Event()

        async def publish(self, context: PublishContext, call_next: PublishNext) -> PublishAck:
            context.headers["x-origin"] = "payments"
            return await call_next(context)

        async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
            outcome = await call_next(context)
            self.seen.append((dict(context.headers), outcome))
            self.done.set()
            return outcome

    stamp = Stamp()
    async with await connect(nats_server.url, middleware=[stamp]) as bus:
        listener = await TicketCreatedListener(bus).listen()
        await TicketCreatedPublisher(bus).publish(EVENT)
        async with asyncio.timeout(10):
            await stamp.done.wait()
        await listener.close()

    ((headers, outcome),) = stamp.seen
    assert headers.get("x-origin") == "payments"
    assert outcome == Acked()
    assert listener.handled == [EVENT]
