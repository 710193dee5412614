"""The JetStream transport: one NATS connection, one stream, push consumers.

This module wires the parts: the connection comes from ``nats_connection.open_nats()``,
the stream and its consumers are administered by ``admin.py``, publishing is
``publishing.py`` and each subscription ``subscription.py``. Refusals of the server
become errors of the call that caused them (``permissions.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from nats.aio.client import Client

from common_events.errors import ConfigurationError, ConnectError, TransportClosed, TransportError
from common_events.transports.base import (
    ConnectionLostCallback,
    MessageHandler,
    PublishAck,
    SubscriptionOptions,
    TransportSubscription,
)
from common_events.transports.jetstream.admin import StreamAdmin
from common_events.transports.jetstream.consumers import plan_consumer
from common_events.transports.jetstream.options import JetStreamOptions, server_list
from common_events.transports.jetstream.parking import ParkingLot
from common_events.transports.jetstream.permissions import PermissionWatch
from common_events.transports.jetstream.publishing import Publishing
from common_events.transports.jetstream.subscription import JetStreamSubscription
from common_events.transports.nats_connection import NatsConnection, open_nats, redact_url

logger = logging.getLogger(__name__)


class JetStreamTransport:
    """A connection to NATS with JetStream; made by ``connect()``."""

    def __init__(
        self,
        url: str,
        options: JetStreamOptions,
        connection: NatsConnection,
        watch: PermissionWatch,
        *,
        subjects: tuple[str, ...] = (),
    ) -> None:
        # Without the query: it is ignored, and might hold what nobody should read.
        self._url = redact_url(url.partition("?")[0])
        self.options = options
        self._connection = connection
        self._watch = watch
        self._closing = False
        self._subscriptions: list[JetStreamSubscription] = []
        client = connection.client
        self.admin = StreamAdmin(
            connection, options, watch, subjects=subjects, closing=self._is_closing
        )
        self._publishing = Publishing(
            client,
            options,
            watch,
            self.admin,
            check_open=self._check_open,
            closing=self._is_closing,
        )

    @property
    def url(self) -> str:
        """The URL without credentials (``nats://***@host:4222``)."""
        return self._url

    @property
    def connected(self) -> bool:
        """Up now: ``False`` while nats-py reconnects, and once lost or closed."""
        return not self._closing and self._connection.connected

    @property
    def max_payload(self) -> int | None:
        """The server's maximum payload, from its INFO (nats-py updates it on reconnect)."""
        return int(self._connection.client.max_payload)

    @property
    def carries_headers(self) -> bool:
        return True

    @property
    def stream(self) -> str:
        return self.options.stream

    @property
    def client(self) -> Client:
        """The nats-py connection underneath, for tools and tests."""
        if self._closing:
            raise TransportClosed("the JetStream transport is not connected")
        return self._connection.client

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        self._connection.add_connection_lost_callback(callback)

    def _is_closing(self) -> bool:
        return self._closing

    def _check_open(self) -> None:
        if self._closing:
            raise TransportClosed("the JetStream transport is closed")
        self._connection.check_usable("the connection to NATS is gone")

    # -- publishing ----------------------------------------------------------------------

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        return await self._publishing.publish(subject, data, headers)

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        return await self._publishing.publish_many(subject, payloads)

    # -- subscribing ---------------------------------------------------------------------

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription:
        self._check_open()
        if options.ack_wait <= 0:
            raise ConfigurationError("ack_wait must be positive")
        plan = plan_consumer(
            subject,
            options,
            stream=self.options.stream,
            deliver_prefix=self.options.deliver_prefix,
            ephemeral_inactive_threshold=self.options.ephemeral_inactive_threshold,
        )
        parked = await self.admin.bind_consumer(plan)
        parking = ParkingLot(
            self.admin,
            name=plan.name,
            base_window=plan.max_ack_pending,
            ack_wait=plan.ack_wait,
            known=parked,
        )
        subscription = JetStreamSubscription(
            self._connection.client,
            self.admin,
            subject,
            handler,
            plan,
            parking,
            stop_timeout=self.options.request_timeout,
            on_closed=self._forget,
        )
        try:
            await subscription.start(self._watch)
        except BaseException:
            await parking.close(0)
            raise
        self._subscriptions.append(subscription)
        logger.debug("subscribed to %s via consumer %s", subject, plan.name)
        return subscription

    def _forget(self, subscription: JetStreamSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop every subscription (durables survive) and close the connection; idempotent.

        The connection's close flushes what is buffered, so the last acks reach the server.
        """
        if self._closing:
            return
        self._closing = True
        self._publishing.close(TransportClosed("the JetStream transport is closed"))
        try:
            for subscription in list(self._subscriptions):
                try:
                    await subscription.close()
                except TransportError as error:
                    logger.warning("closing %r: %s", subscription, error)
            self._subscriptions.clear()
        finally:
            await self._connection.close()

    def __repr__(self) -> str:
        return f"JetStreamTransport(url={self._url!r}, stream={self.options.stream!r})"


async def connect(
    url: str, *, subjects: Iterable[str] | None = None, **options: object
) -> JetStreamTransport:
    """Connect to NATS at ``url`` (``nats://host:port`` or ``tls://``, or a comma-separated
    list for a cluster) and make sure the event stream exists and suits us.

    ``subjects``: every subject the stream must store; ``common_events.connect()`` passes
    each event subject and its dead-letter subject. Without them an existing stream is
    used as it is, and a missing one is refused with ``ConfigurationError``.
    Options: see ``JetStreamOptions`` (user, password, token, creds_file, nkeys_seed, tls,
    stream, replicas, duplicate_window, publish_timeout...).
    """
    settings = JetStreamOptions.from_kwargs(dict(options))
    wanted = tuple(dict.fromkeys(subjects or ()))
    if any(not isinstance(subject, str) or not subject for subject in wanted):
        raise ConfigurationError("subjects must be non-empty strings")
    servers = server_list(url)
    watch = PermissionWatch()
    connection = await open_nats(servers, settings, on_error=watch.on_connection_error)
    try:
        transport = JetStreamTransport(url, settings, connection, watch, subjects=wanted)
        await transport.admin.ensure_stream()
    except ConnectError as error:
        await connection.close()
        # Say which server: with several environments the URL is half the answer.
        raise type(error)(f"NATS at {servers.display}: {error}") from None
    except BaseException:
        await connection.close()
        raise
    logger.info("connected to %s, stream %s", servers.display, settings.stream)
    return transport
