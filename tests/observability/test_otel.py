"""OpenTelemetry spans of the ``Tracing`` middleware, read from the SDK's in-memory
exporter: a publisher and a listener on separate connections to a real JetStream server
share one trace through the message's headers; on NATS Streaming (no headers) and in
memory the spans exist with their attributes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from common_events import (
    Bus,
    Listener,
    Message,
    OutOfOrder,
    Publisher,
    TicketCreatedEvent,
    connect,
    encode_event,
)
from common_events.errors import TransportClosed
from common_events.observability.otel import Tracing
from common_events.testing.servers import EmbeddedNatsServer, StanServer
from tests.observability.support import eventually

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


@dataclass
class Seen:
    data: bytes
    headers: dict[str, str]
    delivery_count: int


@dataclass
class Script:
    """What the handler does with each ticket id: ``fail`` raises on every delivery up
    to the given count, ``late`` raises ``OutOfOrder`` on the first."""

    fail_until: dict[str, int] = field(default_factory=dict)
    late: set[str] = field(default_factory=set)


class TracedListener(Listener[TicketCreatedEvent]):
    queue_group = "tracing-tests"
    retry_delay = 0.05
    max_deliveries = 2
    ack_wait = 2.0

    def __init__(self, bus: Bus, script: Script | None = None) -> None:
        super().__init__(bus)
        self.script = script or Script()
        self.seen: list[Seen] = []
        self.settled: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.seen.append(Seen(msg.data, dict(msg.headers), msg.delivery_count))
        if msg.delivery_count <= self.script.fail_until.get(event.id, 0):
            if msg.delivery_count >= self.max_deliveries:
                self.settled.put_nowait(event.id)
            raise ValueError(f"cannot handle {event.id} yet")
        if event.id in self.script.late and msg.delivery_count == 1:
            raise OutOfOrder(f"{event.id} arrived before its predecessor")
        await msg.ack()
        self.settled.put_nowait(event.id)


def ticket(n: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"t{n}", version=0, title="x", price=1, user_id="u")


async def settled(listener: TracedListener, *ids: str) -> None:
    """Wait until the handler has settled each of ``ids`` (in any order)."""
    got: list[str] = []
    async with asyncio.timeout(15):
        while len(got) < len(ids):
            got.append(await listener.settled.get())
    assert sorted(got) == sorted(ids)


def finished(exporter: InMemorySpanExporter, name: str, count: int) -> list[ReadableSpan]:
    spans = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(spans) == count, [span.name for span in exporter.get_finished_spans()]
    return spans


async def spans_named(
    exporter: InMemorySpanExporter, name: str, count: int
) -> list[ReadableSpan]:
    """The consumer span ends after the ack the handler sent: wait for it a moment."""
    await eventually(
        lambda: len([s for s in exporter.get_finished_spans() if s.name == name]) >= count
    )
    return finished(exporter, name, count)


async def test_one_trace_from_publisher_to_listener_across_connections_on_jetstream(
    nats_server: EmbeddedNatsServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    publishing = await connect(nats_server.url, middleware=[Tracing(tracer_provider=provider)])
    listening = await connect(nats_server.url, middleware=[Tracing(tracer_provider=provider)])
    try:
        listener = await TracedListener(listening).listen()
        ack = await TicketCreatedPublisher(publishing).publish(ticket(1))
        await settled(listener, "t1")
        (process,) = await spans_named(exporter, "process ticket:created", 1)
    finally:
        await publishing.close()
        await listening.close()

    (send,) = finished(exporter, "publish ticket:created", 1)
    assert send.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert send.context is not None and process.context is not None
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.parent.is_remote, "the context came through the message's headers"
    assert send.parent is None

    payload = encode_event(ticket(1))
    assert send.attributes == {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "ticket:created",
        "messaging.message.id": str(ack.sequence),
    }
    assert process.attributes == {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "ticket:created",
        "messaging.consumer.group.name": "tracing-tests",
        "messaging.message.id": str(ack.sequence),
        "messaging.nats.message.delivery_count": 1,
        "common_events.listener": "TracedListener",
        "common_events.outcome": "acked",
    }
    assert process.status.status_code is StatusCode.UNSET

    # The payload is what it always was; the context travels beside it.
    (seen,) = listener.seen
    assert seen.data == payload
    context = send.context
    assert seen.headers["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )


async def test_a_failed_delivery_records_the_exception_and_the_retry_continues_the_trace(
    nats_server: EmbeddedNatsServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    publishing = await connect(nats_server.url, middleware=[Tracing(tracer_provider=provider)])
    listening = await connect(nats_server.url, middleware=[Tracing(tracer_provider=provider)])
    try:
        listener = await TracedListener(
            listening, Script(fail_until={"t1": 1, "t2": 2}, late={"t3"})
        ).listen()
        publisher = TicketCreatedPublisher(publishing)
        for n in (1, 2, 3):
            await publisher.publish(ticket(n))
        await settled(listener, "t1", "t2", "t3")
        processes = await spans_named(exporter, "process ticket:created", 6)
    finally:
        await publishing.close()
        await listening.close()

    sends = {
        span.attributes["messaging.message.id"]: span
        for span in finished(exporter, "publish ticket:created", 3)
    }
    by_outcome: dict[str, list[ReadableSpan]] = {}
    for span in processes:
        by_outcome.setdefault(str(span.attributes["common_events.outcome"]), []).append(span)
        send = sends[span.attributes["messaging.message.id"]]
        assert span.parent is not None and send.context is not None
        assert span.parent.span_id == send.context.span_id, "every delivery is a child"
    assert sorted((k, len(v)) for k, v in by_outcome.items()) == [
        ("acked", 2),
        ("dead_lettered", 1),
        ("out_of_order", 1),
        ("retried", 2),
    ]

    for span in by_outcome["retried"]:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is not None
        assert span.status.description.startswith("ValueError: cannot handle t")
        assert span.attributes["error.type"] == "ValueError"
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert span.attributes["messaging.nats.message.delivery_count"] == 1
    (dead,) = by_outcome["dead_lettered"]
    assert dead.status.status_code is StatusCode.ERROR
    assert dead.attributes["messaging.nats.message.delivery_count"] == 2
    assert dead.attributes["error.type"] == "ValueError"
    (late,) = by_outcome["out_of_order"]
    assert late.attributes["error.type"] == "common_events.errors.OutOfOrder"
    for span in by_outcome["acked"]:
        assert span.status.status_code is StatusCode.UNSET

    # The dead-letter record is published inside the failed delivery's span.
    (dead_letter,) = finished(exporter, "publish dead-letter:ticket:created", 1)
    assert dead_letter.parent is not None and dead.context is not None
    assert dead_letter.parent.span_id == dead.context.span_id


async def test_a_failed_publish_is_an_error_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = await connect("memory://", middleware=[Tracing(tracer_provider=provider)])
    await bus.close()
    with pytest.raises(Exception) as raised:
        await TicketCreatedPublisher(bus).publish(ticket(1))
    (send,) = finished(exporter, "publish ticket:created", 1)
    assert send.status.status_code is StatusCode.ERROR
    assert send.attributes is not None
    assert send.attributes["error.type"] == "common_events.errors.TransportClosed"
    assert isinstance(raised.value, TransportClosed)
    assert "messaging.message.id" not in send.attributes


async def test_memory_spans_with_their_attributes_and_one_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with await connect("memory://", middleware=[Tracing(tracer_provider=provider)]) as bus:
        listener = await TracedListener(bus).listen()
        ack = await TicketCreatedPublisher(bus).publish(ticket(1))
        await settled(listener, "t1")
        (process,) = await spans_named(exporter, "process ticket:created", 1)
    (send,) = finished(exporter, "publish ticket:created", 1)
    assert send.attributes is not None and process.attributes is not None
    assert send.attributes["messaging.message.id"] == str(ack.sequence)
    assert process.attributes["messaging.message.id"] == str(ack.sequence)
    assert process.attributes["messaging.consumer.group.name"] == "tracing-tests"
    assert process.attributes["common_events.outcome"] == "acked"
    assert send.context is not None and process.parent is not None
    assert process.parent.span_id == send.context.span_id


async def test_stan_spans_exist_and_each_delivery_starts_its_own_trace(
    stan_server: StanServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    publishing = await connect(stan_server.url, middleware=[Tracing(tracer_provider=provider)])
    listening = await connect(stan_server.url, middleware=[Tracing(tracer_provider=provider)])
    try:
        listener = await TracedListener(listening).listen()
        await TicketCreatedPublisher(publishing).publish(ticket(1))
        await settled(listener, "t1")
        (process,) = await spans_named(exporter, "process ticket:created", 1)
    finally:
        await publishing.close()
        await listening.close()
    (send,) = finished(exporter, "publish ticket:created", 1)
    assert send.attributes is not None and process.attributes is not None
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert "messaging.message.id" not in send.attributes, "a PubAck has no sequence"
    assert process.attributes["messaging.message.id"] == "1"
    assert process.attributes["messaging.system"] == "nats"
    assert process.attributes["messaging.consumer.group.name"] == "tracing-tests"
    assert process.attributes["common_events.outcome"] == "acked"
    # No headers on NATS Streaming: the consumer span is the root of a trace of its own.
    assert process.parent is None
    assert send.context is not None and process.context is not None
    assert process.context.trace_id != send.context.trace_id
    assert listener.seen[0].headers == {}


async def test_a_delivery_does_not_join_whatever_span_was_current_at_subscribe(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("test")
    async with await connect("memory://", middleware=[Tracing(tracer_provider=provider)]) as bus:
        with tracer.start_as_current_span("startup"):
            listener = await TracedListener(bus).listen()
        # Published without tracing: no context in the headers.
        await connect_plain_publish(bus)
        await settled(listener, "t1")
        (process,) = await spans_named(exporter, "process ticket:created", 1)
    assert process.parent is None


async def connect_plain_publish(bus: Bus) -> None:
    await bus.transport.publish("ticket:created", encode_event(ticket(1)))
