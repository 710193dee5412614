"""The window of first attempts of one ``publish_many``: a whole window of publishes is
sent before the sender waits, and it wakes once per half window of replies."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from common_events.transports.base import PublishAck
from common_events.transports.jetstream.replies import _confirmation, _Failed, _final
from common_events.transports.nats_connection import NatsFailure


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Batch:
    """The first attempt of every publish of one ``publish_many``, pipelined.

    At most a window of them wait for their reply at once; the sender sleeps until the
    replies bring them down to ``wake_at`` (half the window: one wake-up per half
    window, not one per reply). A publish whose reply said to try again (``failures``)
    is left for the retry pass, under the same message id.
    """

    __slots__ = ("aborted", "failures", "outstanding", "results", "subject", "wake", "wake_at")

    def __init__(self, subject: str, size: int) -> None:
        self.subject = subject
        self.results: list[PublishAck | Exception | None] = [None] * size
        self.failures: dict[int, NatsFailure] = {}
        self.outstanding = 0
        self.wake: asyncio.Future[None] | None = None
        self.wake_at = 0
        self.aborted: Exception | None = None

    def reply(self, position: int, msg: Msg) -> None:
        self.outstanding -= 1
        try:
            self.results[position] = _confirmation(self.subject, msg, 1)
        except _Failed as failed:
            if failed.failure.transient:
                self.failures[position] = failed.failure
            else:
                self.results[position] = _final(self.subject, failed.failure)
        wake = self.wake
        if wake is not None and self.outstanding <= self.wake_at and not wake.done():
            wake.set_result(None)

    def abort(self, error: Exception) -> None:
        self.aborted = error
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)
