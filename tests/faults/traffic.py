"""Traffic for the fault scenarios, through the package's public API only.

- ``Publishing``: a few workers, each publishing one event after another with
  ``Publisher.publish`` as a service's request handlers do, writing every start and
  outcome in the ledger. A connection lost for good is replaced by a new one, as a
  restarted process would.
- ``Service``: ``run_service`` with a counting ``Listener`` in a durable queue group; when
  it exits with ``ConnectionLost`` it is started again on a new connection, as an
  orchestrator restarts a process that exited.
- ``Probe``: publishes on a subject nobody listens to, with a short timeout, until the
  broker confirms one: when the broker accepts publishes again, independently of the
  clients under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from common_events import (
    Bus,
    ConnectionLost,
    ExpirationCompleteEvent,
    Listener,
    Message,
    Publisher,
    TicketCreatedEvent,
    TransportClosed,
    TransportError,
    run_service,
)
from tests.faults.ledger import Ledger

logger = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[Bus]]

# Between two attempts to connect to a broker that is not back yet.
_RECONNECT_PAUSE = 0.1
# Between two probes that were not confirmed.
_PROBE_PAUSE = 0.05


class TicketPublisher(Publisher[TicketCreatedEvent]):
    pass


class ProbePublisher(Publisher[ExpirationCompleteEvent]):
    pass


def ticket(event_id: str) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=event_id, version=0, title="fault", price=10, user_id="u1")


async def connect_until_up(connect: Connect, within: float) -> Bus:
    """``connect()`` again and again until the broker answers (a server being restarted,
    a cluster electing a leader)."""
    async with asyncio.timeout(within):
        while True:
            try:
                return await connect()
            except TransportError as error:
                logger.info("broker not reachable yet: %s", error)
            await asyncio.sleep(_RECONNECT_PAUSE)


class Publishing:
    """``workers`` publishers, each awaiting one publish after another."""

    def __init__(
        self,
        connect: Connect,
        ledger: Ledger,
        *,
        workers: int = 4,
        pause: float = 0.01,
        prefix: str = "ev",
    ) -> None:
        self._connect = connect
        self._ledger = ledger
        self._workers = workers
        self._pause = pause
        self._prefix = prefix
        self._ids = itertools.count()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._bursts: list[asyncio.Future[list[None]]] = []
        self._bus: Bus | None = None
        self._renewing = asyncio.Lock()
        self.new_connections = 0

    async def __aenter__(self) -> Publishing:
        return await self.start()

    async def start(self) -> Publishing:
        self._bus = await self._connect()
        self._tasks = [
            asyncio.create_task(self._work(), name=f"publisher-{n}") for n in range(self._workers)
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(within=1.0)

    async def stop(self, within: float) -> None:
        """Start no new publish; give those in flight ``within`` s, then abandon them."""
        self._stopping.set()
        running: list[asyncio.Future[Any]] = [*self._tasks, *self._bursts]
        self._tasks, self._bursts = [], []
        if running:
            _done, pending = await asyncio.wait(running, timeout=within)
            for future in pending:
                future.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(TransportError):
                await bus.close()

    def burst(self, count: int) -> asyncio.Future[list[None]]:
        """Publish ``count`` events at once (a batch, a spike of requests), each awaited
        by a task of its own, so that many are on the wire together."""
        assert self._bus is not None
        bus = self._bus
        burst = asyncio.gather(*(self._publish_one(bus) for _ in range(count)))
        self._bursts.append(burst)
        return burst

    async def _publish_one(self, bus: Bus) -> None:
        event_id = f"{self._prefix}-{next(self._ids)}"
        await self._ledger.publish_started(event_id)
        try:
            await TicketPublisher(bus).publish(ticket(event_id))
        except TransportError as error:
            await self._ledger.publish_failed(event_id, error)
        else:
            await self._ledger.publish_confirmed(event_id)

    async def _renew(self, lost: Bus) -> Bus:
        async with self._renewing:
            if self._bus is lost:
                with contextlib.suppress(TransportError):
                    await lost.close()
                self._bus = await connect_until_up(self._connect, within=60)
                self.new_connections += 1
            assert self._bus is not None
            return self._bus

    async def _work(self) -> None:
        ledger = self._ledger
        assert self._bus is not None
        bus = self._bus
        while not self._stopping.is_set():
            if bus is not self._bus:
                assert self._bus is not None
                bus = self._bus
            event_id = f"{self._prefix}-{next(self._ids)}"
            await ledger.publish_started(event_id)
            try:
                await TicketPublisher(bus).publish(ticket(event_id))
            except TransportError as error:
                await ledger.publish_failed(event_id, error)
                if isinstance(error, ConnectionLost | TransportClosed) or bus.lost is not None:
                    bus = await self._renew(bus)
            else:
                await ledger.publish_confirmed(event_id)
            await asyncio.sleep(self._pause)


class CountingListener(Listener[TicketCreatedEvent]):
    queue_group = "faults-service"
    ack_wait = 2.0
    max_in_flight = 64

    def __init__(self, bus: Bus, ledger: Ledger, handling_time: float = 0.0) -> None:
        super().__init__(bus)
        self._ledger = ledger
        self._handling_time = handling_time

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        if self._handling_time:
            await asyncio.sleep(self._handling_time)  # the work a slow service does
        await self._ledger.delivered(event.id, msg.sequence, msg.delivery_count)
        await msg.ack()


class Service:
    """One instance of a listening service, restarted when its connection is lost."""

    def __init__(
        self,
        connect: Connect,
        ledger: Ledger,
        *,
        handling_time: float = 0.0,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self._connect = connect
        self._ledger = ledger
        self._handling_time = handling_time
        self._settings = settings or {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.restarts = 0
        self.exits: list[str] = []

    async def __aenter__(self) -> Service:
        self._task = asyncio.create_task(self._run(), name="service")
        async with asyncio.timeout(30):
            await self._started.wait()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=15)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _listener_type(self) -> type[CountingListener]:
        if not self._settings:
            return CountingListener
        return type("TunedCountingListener", (CountingListener,), dict(self._settings))

    async def _run(self) -> None:
        listener_type = self._listener_type()
        while not self._stop.is_set():
            bus = await connect_until_up(self._connect, within=60)
            listener = listener_type(bus, self._ledger, self._handling_time)
            self._started.set()
            try:
                await run_service(bus, listener, stop=self._stop, signals=(), drain_timeout=5)
            except ConnectionLost as error:
                # What an orchestrator does with a process that exited with an error.
                self.restarts += 1
                self.exits.append(str(error))
                logger.info("service exited (%s); starting it again", error)


class Probe:
    """Finds when the broker accepts publishes again: short publishes on a subject
    nobody listens to, on a connection of its own (made before the fault), until one is
    confirmed."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._bus: Bus | None = None
        self.attempts = 0

    async def __aenter__(self) -> Probe:
        self._bus = await self._connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(TransportError):
                await bus.close()

    async def accepting(self, within: float) -> float:
        """When (``Ledger.now()``'s clock) the first confirmed probe was sent."""
        async with asyncio.timeout(within):
            while True:
                bus = self._bus
                if bus is None or bus.lost is not None:
                    if bus is not None:
                        with contextlib.suppress(TransportError):
                            await bus.close()
                    self._bus = bus = await connect_until_up(self._connect, within=within)
                self.attempts += 1
                sent = Ledger.now()
                try:
                    await ProbePublisher(bus).publish(
                        ExpirationCompleteEvent(order_id=f"probe-{self.attempts}")
                    )
                except TransportError:
                    await asyncio.sleep(_PROBE_PAUSE)
                    continue
                return sent
