"""``run_service``: run listeners until SIGINT/SIGTERM, then shut down cleanly.

Things that run beside the listeners (an outbox relay, a health endpoint) are
*companions*: objects with ``start(service)`` and ``close()``, started before the
listeners subscribe and closed after they drained, before the connection closes. The
core knows them only by that protocol, so the optional parts above it plug in without
the core importing them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from common_events.core._renamed import renamed_option
from common_events.core.bus import Bus
from common_events.core.listener import DEFAULT_DRAIN_TIMEOUT, Listener
from common_events.errors import ConnectionLost

logger = logging.getLogger(__name__)


class RunningService:
    """What a companion may read of the service it runs beside."""

    def __init__(self, bus: Bus, listeners: Sequence[Listener[Any]]) -> None:
        self.bus = bus
        self.listeners = tuple(listeners)
        self.started = False
        """Every listener has subscribed."""
        self.draining = False
        """Shutting down: the listeners take no new messages."""


@runtime_checkable
class ServiceCompanion(Protocol):
    """Runs beside a service's listeners for as long as ``run_service`` runs."""

    async def start(self, service: RunningService) -> None:
        """Begin; return once running (work goes on in tasks of the companion's own)."""
        ...

    async def close(self) -> None:
        """Stop and release everything; called once, after the listeners drained."""
        ...


async def run_service(
    bus: Bus,
    *listeners: Listener[Any],
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    stop: asyncio.Event | None = None,
    signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    shutdown_timeout: float | None = None,
    companions: Sequence[ServiceCompanion] = (),
) -> None:
    """Start ``listeners`` and run until a stop signal (or ``stop`` is set).

    Then: stop taking new messages, wait up to ``drain_timeout`` seconds for the
    handlers in flight, close the subscriptions (durables survive, so the next start
    resumes where this one stopped) and close the connection, which tells the broker
    at once that this client is gone. ``shutdown_timeout`` is the deprecated old name
    of ``drain_timeout``.

    If the connection is lost for good meanwhile (the broker forgot this client, or no
    server can be reached), the same shutdown runs and ``ConnectionLost`` is raised, so
    the process exits with an error and its supervisor starts it afresh.

    ``companions`` (an outbox relay, a health endpoint) start before the listeners
    subscribe and close after they drained, in reverse order.
    """
    if shutdown_timeout is not None:
        drain_timeout = renamed_option(
            None,
            shutdown_timeout,
            name="drain_timeout",
            old_name="shutdown_timeout",
            default=drain_timeout,
        )
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in signals:
        try:
            loop.add_signal_handler(signum, _on_signal, signum, stop)
        except (NotImplementedError, RuntimeError, ValueError):
            logger.debug("cannot install a handler for %s here", signum.name)
        else:
            installed.append(signum)
    lost: ConnectionLost | None = None
    service = RunningService(bus, listeners)
    started: list[ServiceCompanion] = []
    try:
        for companion in companions:
            await companion.start(service)
            started.append(companion)
        for listener in listeners:
            await listener.listen()
        service.started = True
        logger.info("service running with %d listener(s) on %s", len(listeners), bus.url)
        lost = await _until_stopped_or_lost(stop, bus)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        service.draining = True
        for listener in listeners:
            listener.pause()
        results = await asyncio.gather(
            *(listener.close(drain_timeout) for listener in listeners),
            return_exceptions=True,
        )
        for listener, result in zip(listeners, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("closing %s failed: %r", type(listener).__name__, result)
        for companion in reversed(started):
            try:
                await companion.close()
            except Exception as error:
                logger.error("closing %s failed: %r", type(companion).__name__, error)
        await bus.close()
        logger.info("service stopped")
    if lost is not None:
        # Exit with the error, as the reference services exit when their client
        # closes: the orchestrator restarts the service, which reconnects afresh.
        raise lost


async def _until_stopped_or_lost(stop: asyncio.Event, bus: Bus) -> ConnectionLost | None:
    stopping = asyncio.ensure_future(stop.wait())
    losing = asyncio.ensure_future(bus.wait_lost())
    try:
        await asyncio.wait({stopping, losing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        losing.cancel()
    if stop.is_set():
        return None
    lost = bus.lost
    logger.error("connection lost (%s); shutting down", lost)
    return lost


def _on_signal(signum: signal.Signals, stop: asyncio.Event) -> None:
    logger.info("received %s; shutting down", signum.name)
    stop.set()
