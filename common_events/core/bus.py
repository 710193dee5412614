"""The bus: the friendly client over one transport, and ``connect(url)``.

Publishers and listeners take the bus object; they never branch on which transport is
underneath. Pass the bus around; there is no global one.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from common_events.core.codec import stream_subjects
from common_events.errors import ConfigurationError, ConnectionLost
from common_events.transports.base import (
    MessageHandler,
    PublishAck,
    SubscriptionOptions,
    Transport,
    TransportSubscription,
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


class Bus:
    """A connection to the event broker, whatever the transport.

    Use it as an async context manager, or call ``close()``.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
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
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        """Publish raw bytes; prefer a ``Publisher``, which validates the event type."""
        return await self.transport.publish(subject, data, headers)

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        """Publish raw payloads pipelined; prefer ``Publisher.publish_many``."""
        return await self.transport.publish_many(subject, payloads)

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription:
        """Subscribe a raw handler; prefer a ``Listener``, which decodes and acks."""
        return await self.transport.subscribe(subject, handler, options)

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


async def connect(url: str | None = None, **options: Any) -> Bus:
    """Connect to the broker at ``url`` and return the bus.

    The scheme picks the transport: ``memory://`` (in-process), ``stan://host:port``
    (NATS Streaming; ``cluster_id=``, ``client_id=``), ``nats://host:port`` (JetStream).
    Options are the transport's. With no ``url``, ``COMMON_EVENTS_URL`` is read.

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
    return Bus(transport)
