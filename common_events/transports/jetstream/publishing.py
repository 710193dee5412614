"""Publishing to the stream: retried under one ``Nats-Msg-Id``, with a bound on the
publishes waiting on the server.

A publish that raced a server failure (a reconnect, a leader election) is sent again with
the same message id until the publish timeout, and the stream's duplicate window stores
it once. The only header this transport adds is that id: every header costs parse time on
every delivery, and nothing reads any other.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from nats.js import JetStreamContext

from common_events.errors import PermissionDenied, PublishError, PublishTimeout
from common_events.transports.base import PublishAck
from common_events.transports.batch import publish_with_workers
from common_events.transports.jetstream.options import JetStreamOptions
from common_events.transports.jetstream.permissions import PermissionWatch
from common_events.transports.nats_connection import (
    JetStreamApiError,
    Operation,
    classify_nats_error,
)

logger = logging.getLogger(__name__)

MESSAGE_ID = "Nats-Msg-Id"


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
        js: JetStreamContext,
        options: JetStreamOptions,
        watch: PermissionWatch,
        streams: StreamKnowledge,
        *,
        check_open: Callable[[], None],
        closing: Callable[[], bool],
    ) -> None:
        self._js = js
        self._options = options
        self._watch = watch
        self._streams = streams
        self._check_open = check_open
        self._closing = closing
        self._slots = asyncio.Semaphore(options.max_pending_publishes)

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        return await publish_with_workers(
            self.publish, subject, payloads, workers=self._options.max_pending_publishes
        )

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
            return await self._publish(subject, data, headers, deadline)
        finally:
            self._slots.release()

    async def _publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None, deadline: float
    ) -> PublishAck:
        message_headers = {MESSAGE_ID: uuid.uuid4().hex}
        if headers:
            message_headers.update(headers)
        options = self._options
        loop = asyncio.get_running_loop()
        attempt = 0
        backoff = 0.05
        last_problem = "no reply"
        stream_checked = False
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            try:
                reply = await self._watch.run(
                    "publish",
                    subject,
                    self._js.publish(
                        subject,
                        data,
                        timeout=max(0.05, min(remaining, options.publish_attempt_timeout)),
                        headers=message_headers,
                    ),
                )
            except PermissionDenied as error:
                raise PermissionDenied(
                    f"NATS refused the publish to {subject!r} ({error}): the user may not "
                    "publish there; nothing was stored"
                ) from None
            except Exception as error:
                what = f"publish to {subject!r}"
                failure = classify_nats_error(
                    error, Operation.PUBLISH, what, closing=self._closing()
                )
                if failure is None or failure.error is error:
                    raise
                if not failure.transient:
                    if isinstance(failure.error, JetStreamApiError):
                        raise PublishError(
                            f"JetStream refused the publish to {subject!r}: "
                            f"{failure.error.description}"
                        ) from error
                    raise failure.error from error
                if not stream_checked and not self._streams.stores(subject):
                    # Nothing answers a subject no stream stores: say so now rather
                    # than retry until the publish timeout.
                    stream_checked = True
                    if await self._streams.stream_storing(subject) is None:
                        raise PublishError(
                            f"no JetStream stream stores {subject!r} (stream "
                            f"{self._streams.stream} stores the event subjects)"
                        ) from None
                last_problem = failure.reason
            else:
                if attempt > 1:
                    logger.info("publish to %s stored after %d attempts", subject, attempt)
                return PublishAck(
                    subject=subject,
                    sequence=int(reply.seq),
                    stream=str(reply.stream),
                    # A duplicate on a retry is usually our own earlier attempt, which
                    # the caller never saw succeed: from its side this is the first store.
                    duplicate=bool(reply.duplicate) and attempt == 1,
                )
            if loop.time() + backoff >= deadline:
                raise PublishTimeout(
                    f"publish to {subject!r} not confirmed within "
                    f"{options.publish_timeout:g}s after {attempt} attempt(s): {last_problem}"
                )
            logger.debug("publish to %s attempt %d: %s; retrying", subject, attempt, last_problem)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
