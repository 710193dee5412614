"""The bus: the friendly client over one transport, and ``connect(url)``.

Publishers and listeners take the bus object; they never branch on which transport is
underneath. Pass the bus around; there is no global one.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from common_events.core.codec import stream_subjects
from common_events.core.middleware import (
    Middleware,
    PublishChain,
    PublishContext,
    check_middleware,
)
from common_events.errors import ConfigurationError, ConnectionLost
from common_events.events.base import Event
from common_events.transports.base import (
    ImmediatePublisher,
    MessageHandler,
    PublishAck,
    PublishConfirmation,
    SubscriptionOptions,
    Transport,
    TransportSubscription,
    failed_confirmation,
)

logger = logging.getLogger(__name__)

URL_ENVIRONMENT_VARIABLE = "COMMON_EVENTS_URL"

# Scheme -> module with ``async def connect(url, *, subjects, **options) -> Transport``.
# Imported on first use so that a service on one transport never imports the others.
TRANSPORT_MODULES: Mapping[str, str] = {
    "memory": "common_events.transports.memory",
    "stan": "common_events.transports.stan",
    "nats": "common_events.transports.jetstream",
    "tls": "common_events.transports.jetstream",
}

PUBLISH_MANY_WORKERS = 64
"""Publishes in flight at once in ``publish_many`` when middlewares see each publish."""


class Bus:
    """A connection to the event broker, whatever the transport.

    Use it as an async context manager, or call ``close()``.

    ``middleware`` runs around every publish and every delivery of the listeners on this
    bus, the first in the list outermost (``common_events.core.middleware``).
    """

    def __init__(self, transport: Transport, *, middleware: Iterable[Middleware] = ()) -> None:
        self.transport = transport
        self._middleware = check_middleware(middleware)
        chain = PublishChain(self._middleware, self._publish_context)
        # None when no middleware does anything on publish: the plain path stays as fast.
        self._publish_chain = chain if chain else None
        # Where the transport starts a publish in line and no middleware sees publishes,
        # ``start_publish`` hands back the transport's confirmation: no task a publish.
        self._publish_now: Callable[..., PublishConfirmation] | None = (
            transport.publish_now
            if self._publish_chain is None and isinstance(transport, ImmediatePublisher)
            else None
        )
        self._closed = False
        self._lost: ConnectionLost | None = None
        self._lost_event = asyncio.Event()
        transport.add_connection_lost_callback(self._connection_lost)

    def _connection_lost(self, error: ConnectionLost) -> None:
        if self._lost is None:
            self._lost = error
            self._lost_event.set()

    @property
    def lost(self) -> ConnectionLost | None:
        """Why the connection is gone for good, or ``None`` while it is not."""
        return self._lost

    async def wait_lost(self) -> ConnectionLost:
        """Wait until the connection is lost for good (never, after a plain ``close()``)."""
        await self._lost_event.wait()
        assert self._lost is not None
        return self._lost

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The middlewares of this bus, outermost first."""
        return self._middleware

    @property
    def url(self) -> str:
        """The transport's URL, without credentials."""
        return self.transport.url

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        """Calls reach the broker now; ``False`` while reconnecting, lost or closed."""
        return not self._closed and self._lost is None and self.transport.connected

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        event: Event | None = None,
    ) -> PublishAck:
        """Publish raw bytes; prefer a ``Publisher``, which validates the event type.

        ``event`` is what ``data`` encodes, for the middlewares to see (a ``Publisher``
        passes it); it is not sent.
        """
        if self._publish_chain is None:
            return await self.transport.publish(subject, data, headers)
        return await self._publish_chain(PublishContext(subject, data, headers, event))

    def start_publish(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        event: Event | None = None,
    ) -> Coroutine[Any, Any, PublishAck]:
        """The publish of raw bytes, to await; prefer a ``Publisher``.

        Where the transport starts a publish in line (``ImmediatePublisher``: memory,
        NATS Streaming) and no middleware sees publishes, the message is sent now and
        this is its ``PublishConfirmation``, an asyncio future as well: ``gather`` needs
        no task per publish, and this call does not raise (the confirmation does).
        Otherwise it is the coroutine of ``publish``, which sends when it runs.
        """
        publish_now = self._publish_now
        if publish_now is None:
            chain = self._publish_chain
            if chain is None:  # the transport's coroutine itself: one frame less
                return self.transport.publish(subject, data, headers)
            return chain(PublishContext(subject, data, headers, event))
        try:
            return publish_now(subject, data, headers)
        except Exception as error:
            return failed_confirmation(error)

    async def publish_many(
        self,
        subject: str,
        payloads: Sequence[bytes],
        *,
        events: Sequence[Event] | None = None,
    ) -> list[PublishAck | Exception]:
        """Publish raw payloads pipelined; prefer ``Publisher.publish_many``.

        One result per payload, in order: its confirmation or its error. With
        middlewares that see publishes, each payload goes through them on its own
        (up to ``PUBLISH_MANY_WORKERS`` at once); ``events`` are the events the
        payloads encode, for them to see.
        """
        chain = self._publish_chain
        if chain is None:
            return await self.transport.publish_many(subject, payloads)
        if events is not None and len(events) != len(payloads):
            raise ValueError("publish_many: events= must match payloads one to one")
        results: list[PublishAck | Exception | None] = [None] * len(payloads)
        positions = iter(range(len(payloads)))

        async def worker() -> None:
            for position in positions:
                event = events[position] if events is not None else None
                try:
                    results[position] = await chain(
                        PublishContext(subject, payloads[position], None, event)
                    )
                except Exception as error:
                    results[position] = error

        workers = max(1, min(PUBLISH_MANY_WORKERS, len(payloads)))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return [result for result in results if result is not None]

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription:
        """Subscribe a raw handler; prefer a ``Listener``, which decodes and acks."""
        return await self.transport.subscribe(subject, handler, options)

    async def _publish_context(self, context: PublishContext) -> PublishAck:
        return await self.transport.publish(
            context.subject, context.data, context.headers or None
        )

    async def close(self) -> None:
        """Close subscriptions (durables survive) and the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.transport.close()
        # The transport's url property never carries a password (it is redacted there).
        logger.info("closed connection to %s", self.url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Bus(url={self.url!r}, closed={self._closed})"


async def connect(
    url: str | None = None, *, middleware: Iterable[Middleware] = (), **options: Any
) -> Bus:
    """Connect to the broker at ``url`` and return the bus.

    The scheme picks the transport: ``memory://`` (in-process), ``stan://host:port``
    (NATS Streaming; ``cluster_id=``, ``client_id=``), ``nats://host:port`` (JetStream).
    Options are the transport's. With no ``url``, ``COMMON_EVENTS_URL`` is read.
    ``middleware`` runs around every publish and delivery on the bus, the first in the
    list outermost (``common_events.core.middleware``).

    The transport is told every subject the events travel on and their dead-letter
    subjects (``subjects=``), so a broker that stores messages stores all of them.
    """
    if url is None:
        url = os.environ.get(URL_ENVIRONMENT_VARIABLE)
        if not url:
            raise ConfigurationError(
                f"no broker URL: pass one to connect() or set {URL_ENVIRONMENT_VARIABLE} "
                "(for example memory://, stan://127.0.0.1:4222 or nats://127.0.0.1:4222)"
            )
    if "subjects" in options:
        raise TypeError("subjects= is not an option: the core passes every event subject")
    # Checked before connecting, so a wrong list does not leave a connection open.
    middlewares = check_middleware(middleware)
    scheme = urlsplit(url).scheme.lower()
    module_name = TRANSPORT_MODULES.get(scheme)
    if module_name is None:
        known = ", ".join(f"{name}://" for name in TRANSPORT_MODULES)
        # Only the scheme: the rest of the URL may hold a password.
        raise ConfigurationError(
            f"unknown broker URL scheme {scheme + '://'!r}; use one of {known}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise ConfigurationError(
            f"the {scheme}:// transport is not available in this version of common-events"
        ) from None
    transport: Transport = await module.connect(url, subjects=stream_subjects(), **options)
    logger.info("connected to %s", transport.url)
    return Bus(transport, middleware=middlewares)
