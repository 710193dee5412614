"""``StanTransport``, the ``Transport`` interface over one NATS Streaming session, and
``connect()``, which opens one from a ``stan://`` URL."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import ssl
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nats.aio.client import Client

from common_events.errors import ConfigurationError
from common_events.transports.base import (
    ConnectionLostCallback,
    MessageHandler,
    PublishAck,
    PublishConfirmation,
    SubscriptionOptions,
    TransportSubscription,
)
from common_events.transports.nats_connection import (
    NatsConnection,
    NatsOptions,
    ServerList,
    open_nats,
    parse_servers,
    redact_url,
)
from common_events.transports.stan.protocol import StartPosition
from common_events.transports.stan.session import ClientOptions, StanClient
from common_events.transports.stan.subscription import StanSubscription

logger = logging.getLogger(__name__)

DEFAULT_CLUSTER_ID = "test-cluster"
SCHEMES: Mapping[str, str] = {"stan": "nats", "nats-streaming": "nats"}
QUERY_OPTIONS = frozenset({"cluster_id", "client_id"})


def ack_wait_seconds(ack_wait: float) -> int:
    """The server counts ack wait in whole seconds, at least one; never wait less than
    asked, so round up."""
    return max(1, math.ceil(ack_wait))


class StanTransport:
    """Moves bytes over NATS Streaming. Made by ``common_events.transports.stan.connect``."""

    def __init__(self, client: StanClient, url: str) -> None:
        self._client = client
        self._url = redact_url(url)
        self._subscriptions: list[StanSubscription] = []
        self._headers_warned = False

    @property
    def url(self) -> str:
        """The broker URL, with any password or token replaced by ``***``."""
        return self._url

    @property
    def client(self) -> StanClient:
        """The streaming session underneath, for what the interface does not cover."""
        return self._client

    @property
    def client_id(self) -> str:
        return self._client.client_id

    @property
    def cluster_id(self) -> str:
        return self._client.cluster_id

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected

    @property
    def connected(self) -> bool:
        """The session is open and its NATS connection up (not reconnecting)."""
        return self._client.is_connected and self._client.connection.connected

    @property
    def max_payload(self) -> int | None:
        """The NATS server's maximum payload; the streaming protocol's frame around each
        payload is left room by the core (``codec.ENVELOPE_RESERVE``)."""
        return int(self._client.nats.max_payload)

    @property
    def carries_headers(self) -> bool:
        return False

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        # Queued while the window is full: this caller then wakes once, for its PubAck.
        return await self.publish_now(subject, data, headers)

    def publish_now(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishConfirmation:
        """Send now (or queue while the PubAck window is full) and return the
        confirmation; ``ImmediatePublisher``: a ``Publisher`` returns it as it is."""
        if headers and not self._headers_warned:
            # NATS Streaming has no headers; by design metadata never goes into the
            # payload, so it is left out. Said once per connection at WARNING (names
            # only, never values): not on every publish, and not an error, since
            # middlewares and the outbox relay add headers whatever the transport.
            self._headers_warned = True
            logger.warning(
                "NATS Streaming has no message headers: %s not sent, only the payload "
                "(said once per connection)",
                ", ".join(sorted(headers)),
            )
        return self._client.publish_now(subject, data)

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        # Send each as soon as the client has room (max_pub_acks_inflight) and collect
        # the PubAck futures: no task per publish, as Node's callback style.
        pending = await self._client.publish_batch(subject, payloads)
        # PubAcks come in order, mostly: by the time one is awaited, those after it are
        # often done. Cheaper than gather, which schedules a callback for every future.
        for item in pending:
            if not isinstance(item, Exception) and not item.done():
                await asyncio.wait((item,))
        results: list[PublishAck | Exception] = []
        for item in pending:
            if isinstance(item, Exception):
                results.append(item)
            elif (failure := item.exception()) is not None:
                results.append(failure if isinstance(failure, Exception) else Exception(failure))
            else:
                results.append(PublishAck(subject=subject, guid=item.result()))
        return results

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription:
        subscription = await self._client.subscribe(
            subject,
            handler,
            queue_group=options.queue_group,
            durable_name=options.durable_name,
            start_position=(
                StartPosition.FIRST if options.deliver_all_available else StartPosition.NEW_ONLY
            ),
            max_in_flight=max(1, options.max_in_flight),
            ack_wait_seconds=ack_wait_seconds(options.ack_wait),
            manual_acks=True,
        )
        self._subscriptions = [s for s in self._subscriptions if s.active]
        self._subscriptions.append(subscription)
        return subscription

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        self._client.add_connection_lost_callback(callback)

    async def close(self) -> None:
        """Close subscriptions (durables survive), send CloseRequest, close NATS."""
        self._subscriptions.clear()
        await self._client.close()

    def __repr__(self) -> str:
        return f"<StanTransport {self._url} client_id={self.client_id!r}>"


_CLIENT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_CLIENT_ID_NAME = re.compile(r"[A-Za-z0-9_-]+")


def process_name() -> str:
    """What a person calls this process: the package run with ``python -m`` or the
    script or command that started it, spelled as a client id may be
    (``tickets_service`` -> ``tickets-service``); ``common-events`` when there is none."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name.removesuffix(".__main__")
    else:
        program = sys.argv[0] if sys.argv else ""  # "-c" for python -c, "" interactive
        name = "" if program.startswith("-") else os.path.splitext(os.path.basename(program))[0]
    name = _CLIENT_ID_UNSAFE.sub("-", name).strip("-")[:48]
    return name or "common-events"


def default_client_id(name: str | None = None) -> str:
    """``<name>-<16 hex digits>``: ``name`` (else ``process_name()``), so that the
    monitoring pages tell services apart, and a random part, so that every instance of
    a service has a client id of its own."""
    return f"{name or process_name()}-{os.urandom(8).hex()}"


def parse_stan_url(url: str) -> ServerList:
    """``stan://[user:pass@]host[:port][,host2[:port]][?cluster_id=..&client_id=..]`` as
    servers for nats-py (no credentials), the credentials, and the query options."""
    servers = parse_servers(url, schemes=SCHEMES)
    unknown = set(servers.query) - QUERY_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"unknown query option(s) in {redact_url(url)!r}: {sorted(unknown)}"
        )
    return servers


async def connect(
    url: str,
    *,
    subjects: Sequence[str] = (),
    cluster_id: str | None = None,
    client_id: str | None = None,
    name: str | None = None,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    creds_file: str | Path | None = None,
    nkeys_seed: str | Path | None = None,
    tls: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
    nats_connection: Client | None = None,
    connect_timeout: float = 2.0,
    publish_timeout: float = 30.0,
    max_pub_acks_inflight: int = 16384,
    ping_interval: float = 5.0,
    ping_max_out: int = 3,
    handler_grace: float | None = None,
    reconnect_time_wait: float = 0.5,
    max_reconnect_attempts: int = -1,
    on_connection_lost: ConnectionLostCallback | None = None,
) -> StanTransport:
    """Open a NATS Streaming session and return it as a ``Transport``.

    ``url`` is ``stan://[user:pass@]host:port[,host2:port]``; ``cluster_id`` (default
    ``test-cluster``) and ``client_id`` may also come from its query string. The
    default client id is ``<name>-<random>`` (``default_client_id``): ``name`` is the
    service's name (letters, digits, ``-``, ``_``), by default the program's
    (``tickets-service`` for ``python -m tickets_service``). The NATS connection is
    named after the client id. ``user``/``password``/``token``/``creds_file``/``nkeys_seed``/``tls``
    go to nats-py (given here, they win over credentials in the URL): ``creds_file`` is a
    ``.creds`` file of ``nsc generate creds`` (operator mode), ``nkeys_seed`` a file
    holding a user's NKey seed alone; see docs/authentication.md. Pass
    ``nats_connection`` to run on a NATS connection you own (it is not closed).
    ``subjects`` (the core passes the stream's subjects) is not needed: a channel exists
    once something is published on it.

    Like the Go and Node streaming clients, a dropped NATS connection is retried forever
    by default (every ``reconnect_time_wait`` seconds, 0.5 by default, so that service
    resumes within a second of the network or server coming back): while the streaming
    server still knows the client, a reconnect resumes everything, and PINGs tell when it
    does not. Publishes waiting for their PubAck when the connection drops, or when a
    cluster loses its leader, are sent again with the same guid as soon as the server
    answers again (so a publish caught by an outage may be stored twice: at-least-once).
    ``on_connection_lost`` is called (it may be a coroutine function) with a
    ``ConnectionLost`` when the server forgets this client or stops answering PINGs;
    subscriptions stop and publishes fail from then on.

    ``handler_grace`` is deprecated and ignored: closing no longer waits for running
    handlers, the core's ``Listener`` drains them first (``drain_timeout``).
    """
    del subjects
    if handler_grace is not None:
        warnings.warn(
            "connect(handler_grace=) is deprecated and ignored: closing a subscription "
            "no longer waits for its running handler; the Listener drains first "
            "(drain_timeout)",
            DeprecationWarning,
            stacklevel=2,
        )
    servers = parse_stan_url(url)
    cluster = cluster_id or servers.query.get("cluster_id") or DEFAULT_CLUSTER_ID
    if name is not None and not _CLIENT_ID_NAME.fullmatch(name):
        raise ConfigurationError(
            f"name {name!r} cannot start a client id: use letters, digits, '-' and '_'"
        )
    client = client_id or servers.query.get("client_id") or default_client_id(name)
    if max_pub_acks_inflight < 1:
        raise ConfigurationError("max_pub_acks_inflight must be at least 1")
    if ping_interval <= 0 or ping_max_out < 1:
        raise ConfigurationError("ping_interval must be > 0 and ping_max_out >= 1")
    options = ClientOptions(
        connect_timeout=connect_timeout,
        publish_timeout=publish_timeout,
        max_pub_acks_inflight=max_pub_acks_inflight,
        ping_interval=ping_interval,
        ping_max_out=ping_max_out,
    )
    if nats_connection is not None:
        connection = NatsConnection.adopt(nats_connection, name=client)
    else:
        connection = await open_nats(
            servers,
            NatsOptions(
                name=client,
                user=user,
                password=password,
                token=token,
                creds_file=creds_file,
                nkeys_seed=nkeys_seed,
                tls=tls,
                tls_hostname=tls_hostname,
                connect_timeout=connect_timeout,
                reconnect_time_wait=reconnect_time_wait,
                max_reconnect_attempts=max_reconnect_attempts,
                # The session checks the subjects it is given itself, once per subject;
                # every other subject it publishes to comes from the server.
                skip_subject_validation=True,
            ),
            direct_deliveries=True,
        )
    stan = await StanClient.connect(
        connection,
        cluster_id=cluster,
        client_id=client,
        options=options,
        on_connection_lost=on_connection_lost,
    )
    return StanTransport(stan, url)


# -- deprecated ----------------------------------------------------------------------------


def parse_url(url: str) -> tuple[list[str], dict[str, str]]:
    """Deprecated: use ``parse_stan_url``. (server URLs for nats-py, query options); the
    server URLs no longer carry the credentials."""
    warnings.warn(
        "parse_url() is deprecated; use parse_stan_url(), which also gives the credentials",
        DeprecationWarning,
        stacklevel=2,
    )
    servers = parse_stan_url(url)
    return list(servers.servers), dict(servers.query)


async def connect_nats(
    servers: list[str],
    *,
    name: str,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    creds_file: str | None = None,
    tls: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
    connect_timeout: float = 2.0,
    reconnect_time_wait: float = 2.0,
    max_reconnect_attempts: int = -1,
    closed_cb: Callable[[], object] | None = None,
) -> Client:
    """Deprecated: use ``common_events.transports.nats_connection.open_nats``."""
    warnings.warn(
        "connect_nats() is deprecated; use "
        "common_events.transports.nats_connection.open_nats()",
        DeprecationWarning,
        stacklevel=2,
    )
    connection = await open_nats(
        parse_servers(",".join(servers), schemes={"nats": "nats", "tls": "tls"}),
        NatsOptions(
            name=name,
            user=user,
            password=password,
            token=token,
            creds_file=creds_file,
            tls=tls,
            tls_hostname=tls_hostname,
            connect_timeout=connect_timeout,
            reconnect_time_wait=reconnect_time_wait,
            max_reconnect_attempts=max_reconnect_attempts,
            skip_subject_validation=True,
        ),
    )
    if closed_cb is not None:
        callback = closed_cb
        connection.add_connection_lost_callback(lambda _error: callback())
    return connection.client
