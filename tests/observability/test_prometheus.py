"""The ``Metrics`` middleware against real servers: acked, retried, out-of-order and
dead-lettered deliveries, read back from the registry as exact counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry

from common_events import (
    Bus,
    Listener,
    Message,
    OutOfOrder,
    Publisher,
    TicketCreatedEvent,
    connect,
)
from common_events.observability.prometheus import Metrics
from common_events.testing.servers import EmbeddedNatsServer, StanServer
from common_events.transports.memory import MemoryBroker
from tests.observability.support import eventually

pytestmark = pytest.mark.timeout(60)

SUBJECT = "ticket:created"
DEAD = "dead-letter:ticket:created"
GROUP = "metrics-tests"


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class ScriptedListener(Listener[TicketCreatedEvent]):
    """t1 is acked; t2 fails once, then is acked; t3 is out of order once, then acked;
    t4 fails on every delivery and is dead-lettered on its second."""

    queue_group = GROUP
    retry_delay = 0.05
    max_deliveries = 2
    ack_wait = 1.0

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.settled: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        first = msg.delivery_count == 1
        if event.id == "t4":
            if msg.delivery_count >= self.max_deliveries:
                self.settled.put_nowait(event.id)
            raise ValueError("t4 never works")
        if event.id == "t2" and first:
            raise ValueError("t2 works the second time")
        if event.id == "t3" and first:
            raise OutOfOrder("t3 before its predecessor")
        await msg.ack()
        self.settled.put_nowait(event.id)


def ticket(n: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"t{n}", version=0, title="x", price=1, user_id="u")


def reader(registry: CollectorRegistry) -> Callable[..., float]:
    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    return value


async def drive(url: str, registry: CollectorRegistry, **options: object) -> None:
    metrics = Metrics(registry)
    # Two connections, one Metrics: publishing and handling counted in one registry.
    async with await connect(url, middleware=[metrics], **options) as publishing, await connect(
        url, middleware=[metrics], **options
    ) as listening:
        listener = await ScriptedListener(listening).listen()
        publisher = TicketCreatedPublisher(publishing)
        for n in (1, 2, 3, 4):
            await publisher.publish(ticket(n))
        await publishing.publish(SUBJECT, b"{not json")  # dead-lettered on arrival
        got: list[str] = []
        async with asyncio.timeout(30):
            while len(got) < 4:
                got.append(await listener.settled.get())
        # The invalid payload's dead-letter publish, and t4's, are the last counted.
        await eventually(
            lambda: reader(registry)(
                "common_events_published_messages_total", subject=DEAD, outcome="confirmed"
            ) >= 2
        )
        await listener.close()


def check_counts(registry: CollectorRegistry) -> None:
    value = reader(registry)
    handled = {
        outcome: value(
            "common_events_handled_deliveries_total",
            subject=SUBJECT,
            queue_group=GROUP,
            outcome=outcome,
        )
        for outcome in ("acked", "retried", "out_of_order", "dead_lettered", "not_acked")
    }
    assert handled == {
        "acked": 3,
        "retried": 2,
        "out_of_order": 1,
        "dead_lettered": 2,
        "not_acked": 0,
    }
    assert value("common_events_published_messages_total", subject=SUBJECT,
                 outcome="confirmed") == 5
    assert value("common_events_published_messages_total", subject=DEAD,
                 outcome="confirmed") == 2
    assert value("common_events_published_messages_total", subject=SUBJECT,
                 outcome="failed") == 0
    assert value("common_events_publish_duration_seconds_count", subject=SUBJECT) == 5
    assert value("common_events_publish_duration_seconds_count", subject=DEAD) == 2
    # on_message ran for t1 once, t2, t3 and t4 twice each; never for the invalid payload.
    assert value("common_events_handler_duration_seconds_count", subject=SUBJECT,
                 queue_group=GROUP) == 7
    assert value("common_events_handler_duration_seconds_sum", subject=SUBJECT,
                 queue_group=GROUP) > 0
    assert value("common_events_handlers_in_flight", subject=SUBJECT, queue_group=GROUP) == 0


async def test_exact_counts_on_jetstream(nats_server: EmbeddedNatsServer) -> None:
    registry = CollectorRegistry()
    await drive(nats_server.url, registry)
    check_counts(registry)


async def test_exact_counts_on_nats_streaming(stan_server: StanServer) -> None:
    registry = CollectorRegistry()
    await drive(stan_server.url, registry)
    check_counts(registry)


async def test_exact_counts_in_memory() -> None:
    registry = CollectorRegistry()
    await drive("memory://", registry, broker=MemoryBroker())
    check_counts(registry)


async def test_the_in_flight_gauge_counts_running_handlers() -> None:
    registry = CollectorRegistry()
    release = asyncio.Event()
    running = asyncio.Event()

    class Held(Listener[TicketCreatedEvent]):
        queue_group = GROUP

        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
            running.set()
            await release.wait()
            await msg.ack()

    async with await connect("memory://", middleware=[Metrics(registry)]) as bus:
        await Held(bus).listen()
        await TicketCreatedPublisher(bus).publish(ticket(1))
        async with asyncio.timeout(5):
            await running.wait()
        value = reader(registry)
        assert value("common_events_handlers_in_flight", subject=SUBJECT, queue_group=GROUP) == 1
        release.set()
        await eventually(
            lambda: value(
                "common_events_handled_deliveries_total",
                subject=SUBJECT,
                queue_group=GROUP,
                outcome="acked",
            ) >= 1
        )
        assert value("common_events_handlers_in_flight", subject=SUBJECT, queue_group=GROUP) == 0


async def test_a_failed_publish_is_counted_and_raises() -> None:
    registry = CollectorRegistry()
    bus = await connect("memory://", middleware=[Metrics(registry)])
    await bus.close()
    with pytest.raises(Exception):  # noqa: B017 - whatever a closed transport raises
        await TicketCreatedPublisher(bus).publish(ticket(1))
    value = reader(registry)
    assert value("common_events_published_messages_total", subject=SUBJECT, outcome="failed") == 1
    assert value("common_events_publish_duration_seconds_count", subject=SUBJECT) == 0


def test_metric_names_follow_prometheus_conventions() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    assert {(metric.name, metric.type) for metric in registry.collect()} == {
        ("common_events_published_messages", "counter"),
        ("common_events_publish_duration_seconds", "histogram"),
        ("common_events_handled_deliveries", "counter"),
        ("common_events_handler_duration_seconds", "histogram"),
        ("common_events_handlers_in_flight", "gauge"),
    }


def test_two_metrics_in_one_registry_collide_loudly() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)
