"""The health endpoint, asked by a real HTTP client (urllib, in a thread) as a kubelet
would: liveness from the event loop itself, readiness across a real JetStream outage and
while draining, and ``/metrics`` with a Prometheus registry."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from common_events import (
    Bus,
    Listener,
    Message,
    Publisher,
    RunningService,
    TicketCreatedEvent,
    connect,
    run_service,
)
from common_events.observability.health import HealthEndpoint, readiness
from common_events.testing.servers import EmbeddedNatsServer, StanServer, free_loopback_port

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    content_type: str


def get_now(url: str, timeout: float = 5.0) -> Answer:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return Answer(
                response.status, response.read().decode(), response.headers["Content-Type"]
            )
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.read().decode(), error.headers["Content-Type"])


async def get(url: str) -> Answer:
    return await asyncio.to_thread(get_now, url)


async def until(url: str, status: int, *, within: float = 20.0) -> Answer:
    """Poll ``url`` until it answers ``status``; fail with the last answer after ``within``."""
    deadline = time.monotonic() + within
    while True:
        try:
            answer = await get(url)
        except urllib.error.URLError as error:  # not serving yet
            answer = Answer(0, str(error.reason), "")
        if answer.status == status:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} still answers {answer} after {within}s")
        await asyncio.sleep(0.05)


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class HeldListener(Listener[TicketCreatedEvent]):
    """Holds each message until released, so a test can look at a service mid-work."""

    queue_group = "health-tests"
    ack_wait = 5.0

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.handled: list[str] = []

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.started.set()
        await self.release.wait()
        self.handled.append(event.id)
        await msg.ack()


def ticket(n: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"t{n}", version=0, title="x", price=1, user_id="u")


@dataclass
class Running:
    bus: Bus
    endpoint: HealthEndpoint
    listener: HeldListener
    stop: asyncio.Event
    task: asyncio.Task[None]

    def url(self, path: str) -> str:
        return self.endpoint.url + path


@asynccontextmanager
async def service_on(
    bus: Bus, endpoint: HealthEndpoint | None = None
) -> AsyncIterator[Running]:
    endpoint = endpoint or HealthEndpoint(free_loopback_port(), host="127.0.0.1")
    listener = HeldListener(bus)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_service(bus, listener, stop=stop, signals=(), companions=[endpoint], drain_timeout=10)
    )
    running = Running(bus, endpoint, listener, stop, task)
    try:
        await until(running.url("/readyz"), 200)
        yield running
    finally:
        listener.release.set()
        stop.set()
        async with asyncio.timeout(15):
            await asyncio.gather(task, return_exceptions=True)


async def test_live_and_ready_while_running_then_gone_after_shutdown() -> None:
    bus = await connect("memory://")
    async with service_on(bus) as running:
        live = await get(running.url("/livez"))
        ready = await get(running.url("/readyz"))
        assert (live.status, live.body) == (200, "ok\n")
        assert (ready.status, ready.body) == (200, "ok\n")
        assert ready.content_type == "text/plain; charset=utf-8"
        missing = await get(running.url("/metrics"))
        assert missing.status == 404, "no registry, no /metrics"
        url = running.url("/livez")
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(get_now, url, 2.0)


async def test_not_ready_while_draining() -> None:
    bus = await connect("memory://")
    async with service_on(bus) as running:
        await TicketCreatedPublisher(bus).publish(ticket(1))
        async with asyncio.timeout(5):
            await running.listener.started.wait()
        running.stop.set()  # the handler holds the drain open

        draining = await until(running.url("/readyz"), 503)
        assert draining.body == "draining: shutting down\n"
        live = await get(running.url("/livez"))
        assert live.status == 200, "draining is not dead"

        running.listener.release.set()
        async with asyncio.timeout(10):
            await running.task
        assert running.listener.handled == ["t1"]


async def test_liveness_fails_while_the_loop_is_blocked() -> None:
    bus = await connect("memory://")
    endpoint = HealthEndpoint(free_loopback_port(), host="127.0.0.1", liveness_timeout=0.2)
    async with service_on(bus, endpoint) as running:
        answers: list[Answer] = []
        asked = threading.Event()

        def ask() -> None:
            asked.set()
            answers.append(get_now(running.url("/livez")))
            answers.append(get_now(running.url("/readyz")))

        thread = threading.Thread(target=ask)
        thread.start()
        asked.wait(5)
        # Blocks the event loop on purpose, as a synchronous call in a handler would.
        time.sleep(1.0)  # noqa: ASYNC251
        thread.join(5)
        assert [(a.status, a.body) for a in answers] == [
            (503, "the event loop did not answer within 0.2s\n"),
            (503, "the event loop did not answer within 0.2s\n"),
        ]
        assert (await get(running.url("/livez"))).status == 200, "the loop answers again"


async def test_readiness_says_why_before_start_and_when_a_listener_is_not_subscribed() -> None:
    bus = await connect("memory://")
    listener = HeldListener(bus)
    service = RunningService(bus, [listener])
    assert readiness(service).detail == "starting: listeners are subscribing"
    service.started = True
    probe = readiness(service)
    assert (probe.ok, probe.detail) == (False, "not subscribed: HeldListener")
    await listener.listen()
    assert readiness(service).ok
    await listener.close()
    await bus.close()
    assert readiness(service).detail == "not connected to memory:// (reconnecting)"


async def test_ready_then_not_ready_during_a_broker_outage_then_ready_again(
    nats_server: EmbeddedNatsServer,
) -> None:
    bus = await connect(nats_server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    async with service_on(bus) as running:
        await nats_server.stop()
        outage = await until(running.url("/readyz"), 503)
        assert outage.body == f"not connected to {bus.url} (reconnecting)\n"
        assert (await get(running.url("/livez"))).status == 200, "an outage is not death"

        await nats_server.start()
        back = await until(running.url("/readyz"), 200)
        assert back.body == "ok\n"
        # And it works again: an event published now is handled.
        running.listener.release.set()
        await TicketCreatedPublisher(bus).publish(ticket(2))
        async with asyncio.timeout(10):
            await running.listener.started.wait()


async def test_not_ready_once_the_connection_is_lost_for_good(
    nats_server: EmbeddedNatsServer,
) -> None:
    bus = await connect(nats_server.url, reconnect_time_wait=0.05, max_reconnect_attempts=2)
    async with service_on(bus) as running:
        seen: list[Answer] = []

        async def watch() -> None:
            while True:
                seen.append(await get(running.url("/readyz")))
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        await nats_server.stop()
        async with asyncio.timeout(20):
            with pytest.raises(Exception, match="will not reconnect"):
                await running.task
        watcher.cancel()
        bodies = {answer.body for answer in seen if answer.status == 503}
        assert f"not connected to {bus.url} (reconnecting)\n" in bodies


async def test_metrics_with_a_registry() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("probe_test_events", "Events.", registry=registry)
    counter.inc(3)
    bus = await connect("memory://")
    endpoint = HealthEndpoint(free_loopback_port(), host="127.0.0.1", registry=registry)
    async with service_on(bus, endpoint) as running:
        metrics = await get(running.url("/metrics"))
    assert metrics.status == 200
    assert metrics.content_type.startswith("text/plain; version=0.0.4")
    assert "probe_test_events_total 3.0" in metrics.body


def test_the_port_is_taken_at_start_and_given_back_at_close() -> None:
    async def main() -> None:
        bus = await connect("memory://")
        service = RunningService(bus, [])
        first = HealthEndpoint(0, host="127.0.0.1")
        await first.start(service)
        taken = HealthEndpoint(first.port, host="127.0.0.1")
        with pytest.raises(OSError):
            await taken.start(service)
        await first.close()
        again = HealthEndpoint(first.port, host="127.0.0.1")
        await again.start(service)
        await again.close()
        await bus.close()

    asyncio.run(main())


async def test_not_ready_during_a_nats_streaming_outage_then_ready_again(
    stan_server_factory: Callable[..., StanServer],
) -> None:
    # A file store: the restarted server still knows the client, so the session resumes.
    server = stan_server_factory(file_store=True)
    bus = await connect(server.url, reconnect_time_wait=0.1)
    async with service_on(bus) as running:
        await asyncio.to_thread(server.stop)
        outage = await until(running.url("/readyz"), 503)
        assert outage.body == f"not connected to {bus.url} (reconnecting)\n"

        await asyncio.to_thread(server.start)
        await until(running.url("/readyz"), 200)
        running.listener.release.set()
        await TicketCreatedPublisher(bus).publish(ticket(3))
        async with asyncio.timeout(10):
            await running.listener.started.wait()
