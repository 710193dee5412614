"""Telling everyone, once, that a connection is gone for good."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from common_events.errors import ConnectionLost
from common_events.transports.base import ConnectionLostCallback

logger = logging.getLogger(__name__)


class ConnectionLostFanout:
    """The connection-lost callbacks of one transport, called at most once.

    Callbacks may be plain functions or coroutine functions; coroutines run as tasks of
    their own, so a callback may close the transport that reports the loss.
    """

    def __init__(self) -> None:
        self._callbacks: list[ConnectionLostCallback] = []
        self._error: ConnectionLost | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def error(self) -> ConnectionLost | None:
        """Why the connection was lost, or ``None`` while it is not."""
        return self._error

    def add(self, callback: ConnectionLostCallback) -> None:
        self._callbacks.append(callback)

    def fire(self, error: ConnectionLost) -> bool:
        """Report the loss; ``False`` (and nothing called) if it was reported before."""
        if self._error is not None:
            return False
        self._error = error
        for callback in self._callbacks:
            try:
                result = callback(error)
            except Exception:
                logger.exception("a connection-lost callback failed")
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(self._run(result))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return True

    @staticmethod
    async def _run(awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("a connection-lost callback failed")
