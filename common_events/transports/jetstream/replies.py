"""The stream's replies to publishes: routed to what waits on them, and read.

The replies come back on one wildcard subscription of a private inbox (``_Replies``), as
nats-py's own asynchronous publish does: a publish costs one ``PUB`` and one entry in a
table, no subscription, task or ``wait_for`` of its own. ``_confirmation`` reads a reply
as a ``PublishAck`` or a failure (``_Failed``), and ``_final`` is the error a publish ends
with when the failure is not worth another attempt.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from common_events.errors import PublishError
from common_events.transports.base import PublishAck
from common_events.transports.nats_connection import JetStreamApiError, NatsFailure

if TYPE_CHECKING:
    from common_events.transports.jetstream.batch_window import _Batch

_STATUS = "Status"
_NO_RESPONDERS = "503"
"""The status of the server's reply when nothing listens on the subject (no stream)."""


class _Failed(Exception):
    """One attempt's reply said it failed; ``failure`` says how (ready to raise)."""

    def __init__(self, failure: NatsFailure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def _confirmation(subject: str, msg: Msg, attempt: int) -> PublishAck:
    """The stream's reply to a publish: its ``PublishAck``, or ``_Failed``."""
    headers = msg.headers
    if headers and headers.get(_STATUS) == _NO_RESPONDERS:
        raise _Failed(
            NatsFailure(
                PublishError(f"publish to {subject!r}: no stream answered"),
                transient=True,
                reason="no stream answered",
            )
        )
    try:
        reply: dict[str, Any] = json.loads(msg.data)
        error = reply.get("error")
        if error is None:
            return PublishAck(
                subject=subject,
                sequence=int(reply["seq"]),
                stream=str(reply["stream"]),
                # A duplicate on a retry is usually our own earlier attempt, which the
                # caller never saw succeed: from its side this is the first store.
                duplicate=attempt == 1 and bool(reply.get("duplicate")),
            )
    except (ValueError, KeyError, TypeError, AttributeError) as malformed:
        raise _Failed(
            NatsFailure(
                PublishError(f"publish to {subject!r}: the stream's reply is not a PubAck"),
                transient=False,
                reason=f"malformed reply ({malformed})",
            )
        ) from None
    status = error.get("code") if isinstance(error, dict) else None
    description = str(error.get("description") or "") if isinstance(error, dict) else ""
    description = description or f"error {status}"
    # 503: JetStream is not (yet) available: no meta leader, not enabled, restarting.
    transient = status == 503
    raise _Failed(
        NatsFailure(
            JetStreamApiError(
                f"publish to {subject!r}: JetStream refused: {description}",
                status=status if isinstance(status, int) else None,
                err_code=error.get("err_code") if isinstance(error, dict) else None,
                description=description,
            ),
            transient,
            f"JetStream unavailable ({description})" if transient else description,
        )
    )


def _time_out(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _Replies:
    """The stream's replies to this connection's publishes, on one subscription.

    Each publish names ``<inbox>.<token>`` as its reply subject; the reply goes to what
    waits on the token: the future of one publish, or a position of a ``_Batch``.
    nats-py subscribes again after a reconnect.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self.prefix = ""
        self._cut = 0
        self._tokens = 0
        self.waiting: dict[str, asyncio.Future[Msg] | tuple[_Batch, int]] = {}
        self._starting: asyncio.Lock | None = None

    def token(self) -> str:
        self._tokens += 1
        return f"{self._tokens:x}"

    async def start(self) -> str:
        if self.prefix:
            return self.prefix
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self.prefix:
                # The client's inbox prefix: the same subscribe permission as a request.
                prefix = f"{self._client.new_inbox()}."
                await self._client.subscribe(f"{prefix}*", cb=self._on_reply)
                self._cut = len(prefix)
                self.prefix = prefix
        return self.prefix

    async def _on_reply(self, msg: Msg) -> None:
        waiter = self.waiting.pop(msg.subject[self._cut :], None)
        if waiter is None:
            return  # given up on (timed out): a retry under the same id follows
        if type(waiter) is tuple:
            batch, position = waiter
            batch.reply(position, msg)
        elif not waiter.done():  # type: ignore[union-attr]
            waiter.set_result(msg)  # type: ignore[union-attr]

    def fail_all(self, error: Exception) -> None:
        """Closing: every publish still waiting for its reply fails with ``error``."""
        waiting, self.waiting = self.waiting, {}
        for waiter in waiting.values():
            if isinstance(waiter, tuple):
                waiter[0].abort(error)
            elif not waiter.done():
                waiter.set_exception(error)


def _final(subject: str, failure: NatsFailure) -> Exception:
    """The error a publish ends with when ``failure`` is not worth another attempt."""
    if isinstance(failure.error, JetStreamApiError):
        return PublishError(
            f"JetStream refused the publish to {subject!r}: {failure.error.description}"
        )
    return failure.error
