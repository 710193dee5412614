"""``run_service``: run listeners until SIGINT/SIGTERM, then shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable
from typing import Any

from common_events.core._renamed import renamed_option
from common_events.core.bus import Bus
from common_events.core.listener import DEFAULT_DRAIN_TIMEOUT, Listener
from common_events.errors import ConnectionLost

logger = logging.getLogger(__name__)


async def run_service(
    bus: Bus,
    *listeners: Listener[Any],
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    stop: asyncio.Event | None = None,
    signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    shutdown_timeout: float | None = None,
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
    try:
        for listener in listeners:
            await listener.listen()
        logger.info("service running with %d listener(s) on %s", len(listeners), bus.url)
        lost = await _until_stopped_or_lost(stop, bus)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        for listener in listeners:
            listener.pause()
        results = await asyncio.gather(
            *(listener.close(drain_timeout) for listener in listeners),
            return_exceptions=True,
        )
        for listener, result in zip(listeners, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("closing %s failed: %r", type(listener).__name__, result)
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
