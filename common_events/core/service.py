"""``run_service``: run listeners until SIGINT/SIGTERM, then shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable
from typing import Any

from common_events.core.bus import Bus
from common_events.core.listener import Listener

log = logging.getLogger("common_events.service")


async def run_service(
    bus: Bus,
    *listeners: Listener[Any],
    shutdown_timeout: float = 10.0,
    stop: asyncio.Event | None = None,
    signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """Start ``listeners`` and run until a stop signal (or ``stop`` is set).

    Then: stop taking new messages, wait up to ``shutdown_timeout`` seconds for the
    handlers in flight, close the subscriptions (durables survive, so the next start
    resumes where this one stopped) and close the connection, which tells the broker
    at once that this client is gone.
    """
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in signals:
        try:
            loop.add_signal_handler(signum, _on_signal, signum, stop)
        except (NotImplementedError, RuntimeError, ValueError):
            log.debug("cannot install a handler for %s here", signum.name)
        else:
            installed.append(signum)
    try:
        for listener in listeners:
            await listener.listen()
        log.info("service running with %d listener(s) on %s", len(listeners), bus.url)
        await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        for listener in listeners:
            listener.pause()
        results = await asyncio.gather(
            *(listener.close(shutdown_timeout) for listener in listeners),
            return_exceptions=True,
        )
        for listener, result in zip(listeners, results, strict=True):
            if isinstance(result, BaseException):
                log.error("closing %s failed: %r", type(listener).__name__, result)
        await bus.close()
        log.info("service stopped")


def _on_signal(signum: signal.Signals, stop: asyncio.Event) -> None:
    log.info("received %s; shutting down", signum.name)
    stop.set()
