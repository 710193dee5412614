"""Publishing to the stream: every publish confirmed, retried under one ``Nats-Msg-Id``,
with a bound on the publishes waiting on the server.

A publish that raced a server failure (a reconnect, a leader election) is sent again with
the same message id until the publish timeout, and the stream's duplicate window stores
it once. The only header this transport adds is that id: every header costs parse time on
every delivery, and nothing reads any other.

The stream's replies come back on one wildcard subscription of a private inbox
(``_Replies``, in ``replies``), as nats-py's own asynchronous publish does: a publish
costs one ``PUB`` and one entry in a table, no subscription, task or ``wait_for`` of its
own. ``publish_many`` sends a whole window of publishes before it waits (``_Batch``, in
``batch_window``), and sends again, under the same ids, those whose reply said to try
again or did not come.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg

from common_events.errors import PermissionDenied, PublishError, PublishTimeout
from common_events.transports.base import PublishAck
from common_events.transports.jetstream.batch_window import _Batch, _wake
from common_events.transports.jetstream.options import JetStreamOptions
from common_events.transports.jetstream.permissions import PermissionWatch
from common_events.transports.jetstream.replies import (
    _confirmation,
    _Failed,
    _final,
    _Replies,
    _time_out,
)
from common_events.transports.nats_connection import (
    NatsFailure,
    Operation,
    classify_nats_error,
)

logger = logging.getLogger(__name__)

MESSAGE_ID = "Nats-Msg-Id"

RETRY_WORKERS = 64
"""Publishes of a batch sent again at once, after their first attempt failed."""


class StreamKnowledge(Protocol):
    """What publishing asks of the administration: which subjects the stream stores."""

    @property
    def stream(self) -> str: ...

    def stores(self, subject: str) -> bool: ...

    async def stream_storing(self, subject: str) -> str | None: ...


class Publishing:
    """The publish side of one transport."""

    def __init__(
        self,
        client: Client,
        options: JetStreamOptions,
        watch: PermissionWatch,
        streams: StreamKnowledge,
        *,
        check_open: Callable[[], None],
        closing: Callable[[], bool],
    ) -> None:
        self._client = client
        self._options = options
        self._watch = watch
        self._streams = streams
        self._check_open = check_open
        self._closing = closing
        self._slots = asyncio.Semaphore(options.max_pending_publishes)
        self._replies = _Replies(client)
        # Message ids: unique per transport (a random prefix) and per publish (a
        # counter); cheaper than a UUID each.
        self._id_prefix = f"{uuid.uuid4().hex}."
        self._sent = 0

    def _headers(self, given: Mapping[str, str] | None) -> dict[str, str]:
        self._sent += 1
        headers = {MESSAGE_ID: f"{self._id_prefix}{self._sent:x}"}
        if given:
            headers.update(given)  # the caller's own Nats-Msg-Id wins
        return headers

    def close(self, error: Exception) -> None:
        """The transport closes: publishes waiting for their reply fail with ``error``."""
        self._replies.fail_all(error)

    # -- one publish -------------------------------------------------------------------

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.publish_timeout
        # A bounded number of publishes wait on the server at once; the rest wait here.
        # Without the bound a burst of thousands makes replies late, late replies cause
        # retries, and retries add load: each publish would time out.
        try:
            if self._slots.locked():
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()  # free: no timer needed
        except TimeoutError:
            raise PublishTimeout(
                f"publish to {subject!r} not sent within {self._options.publish_timeout:g}s: "
                f"{self._options.max_pending_publishes} publishes were waiting on the server"
            ) from None
        try:
            return await self._publish(subject, data, self._headers(headers), deadline)
        finally:
            self._slots.release()

    async def _attempt(
        self, subject: str, data: bytes, headers: dict[str, str], wait: float, attempt: int
    ) -> PublishAck:
        replies = self._replies
        prefix = replies.prefix or await replies.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        token = replies.token()
        replies.waiting[token] = future
        try:
            await self._client.publish(subject, data, reply=prefix + token, headers=headers)
            expiry = loop.call_later(wait, _time_out, future)
            try:
                msg = await future
            finally:
                expiry.cancel()
        finally:
            replies.waiting.pop(token, None)
        return _confirmation(subject, msg, attempt)

    async def _publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        deadline: float,
        *,
        attempt: int = 0,
        last_problem: str = "no reply",
    ) -> PublishAck:
        """Attempts after ``attempt`` until confirmed, refused or past ``deadline``."""
        options = self._options
        loop = asyncio.get_running_loop()
        backoff = 0.05 * 2 ** min(attempt, 4) if attempt else 0.05
        stream_checked = False
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            timeout = max(0.05, min(remaining, options.publish_attempt_timeout))
            try:
                ack = await self._watch.run(
                    "publish", subject, self._attempt(subject, data, headers, timeout, attempt)
                )
            except PermissionDenied as error:
                raise self._denied(subject, error) from None
            except Exception as error:
                failure = self._failure(subject, error)
                if not failure.transient:
                    raise _final(subject, failure) from error
                if not stream_checked and not self._streams.stores(subject):
                    # Nothing answers a subject no stream stores: say so now rather
                    # than retry until the publish timeout.
                    stream_checked = True
                    await self._check_stored(subject)
                last_problem = failure.reason
            else:
                if attempt > 1:
                    logger.info("publish to %s stored after %d attempts", subject, attempt)
                return ack
            if loop.time() + backoff >= deadline:
                raise PublishTimeout(
                    f"publish to {subject!r} not confirmed within "
                    f"{options.publish_timeout:g}s after {attempt} attempt(s): {last_problem}"
                )
            logger.debug("publish to %s attempt %d: %s; retrying", subject, attempt, last_problem)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    def _failure(self, subject: str, error: Exception) -> NatsFailure:
        if isinstance(error, _Failed):
            return error.failure
        failure = classify_nats_error(
            error, Operation.PUBLISH, f"publish to {subject!r}", closing=self._closing()
        )
        if failure is None:
            raise error
        return failure

    async def _check_stored(self, subject: str) -> None:
        if await self._streams.stream_storing(subject) is None:
            raise PublishError(
                f"no JetStream stream stores {subject!r} (stream "
                f"{self._streams.stream} stores the event subjects)"
            ) from None

    @staticmethod
    def _denied(subject: str, error: PermissionDenied) -> PermissionDenied:
        return PermissionDenied(
            f"NATS refused the publish to {subject!r} ({error}): the user may not "
            "publish there; nothing was stored"
        )

    # -- many publishes ----------------------------------------------------------------

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        """Every payload published and confirmed, a window of them outstanding at once.

        The first attempts go out pipelined, at most ``max_pending_publishes`` waiting
        for their reply; those whose reply did not come within the attempt timeout, or
        said to try again, are sent again one by one under the same message id (a few
        at a time) until the publish timeout, like ``publish``.
        """
        self._check_open()
        size = len(payloads)
        if not size:
            return []
        loop = asyncio.get_running_loop()
        batch = _Batch(subject, size)
        headers = [self._headers(None) for _ in range(size)]
        sent_at = [0.0] * size
        try:
            await self._watch.run(
                "publish", subject, self._pipeline(batch, payloads, headers, sent_at)
            )
        except PermissionDenied as error:
            denied = self._denied(subject, error)
            return [denied if result is None else result for result in batch.results]
        results = batch.results
        if batch.aborted is not None:
            return [batch.aborted if result is None else result for result in results]
        if batch.failures:
            await self._retry(batch, payloads, headers, sent_at, loop)
        return [result for result in results if result is not None]

    async def _pipeline(
        self,
        batch: _Batch,
        payloads: Sequence[bytes],
        headers: list[dict[str, str]],
        sent_at: list[float],
    ) -> None:
        client = self._client
        replies = self._replies
        prefix = replies.prefix or await replies.start()
        waiting = replies.waiting
        loop = asyncio.get_running_loop()
        window = self._options.max_pending_publishes
        refill = window // 2
        attempt_timeout = self._options.publish_attempt_timeout
        subject = batch.subject
        # Sent order is expiry order: every first attempt has the same timeout.
        expiries: deque[tuple[float, int, str]] = deque()
        try:
            for position, payload in enumerate(payloads):
                if batch.outstanding >= window:
                    await self._drain(batch, expiries, refill, loop)
                if batch.aborted is not None:
                    return
                token = replies.token()
                now = sent_at[position] = loop.time()
                waiting[token] = (batch, position)
                try:
                    await client.publish(
                        subject, payload, reply=prefix + token, headers=headers[position]
                    )
                except Exception as error:
                    del waiting[token]
                    failure = self._failure(subject, error)
                    if failure.transient:
                        batch.failures[position] = failure
                    else:
                        batch.results[position] = _final(subject, failure)
                    continue
                batch.outstanding += 1
                expiries.append((now + attempt_timeout, position, token))
            await self._drain(batch, expiries, 0, loop)
        finally:
            for _, _, token in expiries:
                waiting.pop(token, None)

    async def _drain(
        self,
        batch: _Batch,
        expiries: deque[tuple[float, int, str]],
        level: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Wait until at most ``level`` publishes of ``batch`` wait for their reply; those
        past the attempt timeout stop waiting and are left for the retry pass."""
        waiting = self._replies.waiting
        while batch.outstanding > level and batch.aborted is None:
            now = loop.time()
            while expiries:
                deadline, position, token = expiries[0]
                if token not in waiting:
                    expiries.popleft()  # answered
                    continue
                if deadline > now:
                    break
                expiries.popleft()
                del waiting[token]
                batch.outstanding -= 1
                batch.failures[position] = NatsFailure(
                    PublishTimeout(f"publish to {batch.subject!r}: no reply in time"),
                    transient=True,
                    reason="no reply in time",
                )
            if batch.outstanding <= level:
                return
            wake = batch.wake = loop.create_future()
            batch.wake_at = level
            timer = loop.call_at(expiries[0][0], _wake, wake) if expiries else None
            try:
                await wake
            finally:
                batch.wake = None
                if timer is not None:
                    timer.cancel()

    async def _retry(
        self,
        batch: _Batch,
        payloads: Sequence[bytes],
        headers: list[dict[str, str]],
        sent_at: list[float],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Publish again, under the same message ids, those whose first attempt failed."""
        subject = batch.subject
        results = batch.results
        failures = batch.failures
        try:
            if not self._streams.stores(subject):
                await self._check_stored(subject)
        except PublishError as error:
            for position in failures:
                results[position] = error
            return
        positions = iter(sorted(failures))
        timeout = self._options.publish_timeout

        async def worker() -> None:
            for position in positions:
                try:
                    results[position] = await self._publish(
                        subject,
                        payloads[position],
                        headers[position],
                        sent_at[position] + timeout,
                        attempt=1,
                        last_problem=failures[position].reason,
                    )
                except Exception as error:
                    results[position] = error

        await asyncio.sleep(0.05)  # the first back-off, once for the batch
        await asyncio.gather(*(worker() for _ in range(min(RETRY_WORKERS, len(failures)))))
