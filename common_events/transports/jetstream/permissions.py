"""Permission errors of the server, turned into errors of the call that caused them.

nats-py reports a permission violation only to its error callback, while the request
that caused it would simply time out. Each waiting call is registered with its subject;
a violation for that subject interrupts the wait, and the call raises
``PermissionDenied`` at once. ``PermissionWatch.on_connection_error`` is the connection's
error listener that recognises the server's report (``permission_violation()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from common_events.errors import PermissionDenied
from common_events.transports.nats_connection import permission_violation

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Wait:
    """A task waiting on the server for something a permission violation would block."""

    kind: str  # "publish" or "subscription", as the server words it
    subject: str
    prefix: bool
    task: asyncio.Task[Any]
    denied: str | None = field(default=None)

    def covers(self, kind: str, subject: str) -> bool:
        """Whether a violation for ``subject`` concerns this wait.

        nats-py lowercases the server's error text, subject included, so subjects are
        compared without case.
        """
        if kind != self.kind:
            return False
        mine, theirs = self.subject.lower(), subject.lower()
        return theirs.startswith(mine) if self.prefix else theirs == mine


class PermissionWatch:
    """Turns the server's asynchronous permission errors into errors of the waiting call."""

    def __init__(self) -> None:
        self._waits: set[_Wait] = set()

    async def run(
        self, kind: str, subject: str, awaitable: Awaitable[T], *, prefix: bool = False
    ) -> T:
        task = asyncio.current_task()
        assert task is not None, "called outside a task"
        wait = _Wait(kind, subject, prefix, task)
        self._waits.add(wait)
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if wait.denied is None:
                raise
            task.uncancel()
            raise PermissionDenied(wait.denied) from None
        finally:
            self._waits.discard(wait)
        if wait.denied is not None:
            # The call completed in the same instant (a flush's PONG right behind the
            # -ERR), and asyncio.wait_for swallowed the cancellation: still denied.
            # Take back the cancellation in case it is still pending for this task.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
            if task.cancelling():
                task.uncancel()
            raise PermissionDenied(wait.denied)
        return result

    def violation(self, kind: str, subject: str, text: str) -> bool:
        """Interrupt every wait on ``subject``; whether anything was waiting."""
        hit = False
        for wait in list(self._waits):
            if wait.denied is None and wait.covers(kind, subject):
                wait.denied = text
                wait.task.cancel()
                hit = True
        return hit

    def on_connection_error(self, error: Exception) -> bool:
        """The connection's error listener: takes the server's permission violations.

        A violation interrupts the calls waiting on its subject; one that no call waits
        for (an ack, a late reply) is logged. Other errors are left to the connection.
        """
        violation = permission_violation(error)
        if violation is None:
            return False
        kind, subject = violation
        if not self.violation(kind, subject, str(error).removeprefix("nats: ")):
            logger.error("NATS refused %s to %r: permission denied", kind, subject)
        return True
