"""NATS Streaming (STAN) transport: a client of nats-streaming-server on nats-py.

``await connect("stan://127.0.0.1:4222", cluster_id="ticketing")`` gives a
``Transport``. The protocol messages live in ``protocol`` (data only), the session state
machine in ``client``, the ``Transport`` adapter in ``transport``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import nats.errors
from nats.aio.client import Client as NatsClient

from common_events.errors import AuthenticationError, ConfigurationError, ConnectError
from common_events.transports.base import ConnectionLostCallback
from common_events.transports.stan.client import (
    ClientOptions,
    StanClient,
    StanMessage,
    StanSubscription,
    new_client_id,
)
from common_events.transports.stan.protocol import StartPosition
from common_events.transports.stan.transport import StanTransport

__all__ = [
    "ClientOptions",
    "StanClient",
    "StanMessage",
    "StanSubscription",
    "StanTransport",
    "StartPosition",
    "connect",
    "connect_nats",
    "new_client_id",
    "parse_url",
]

logger = logging.getLogger("common_events.transports.stan")

DEFAULT_CLUSTER_ID = "test-cluster"
DEFAULT_PORT = 4222
SCHEMES = ("stan", "nats-streaming")


def parse_url(url: str) -> tuple[list[str], dict[str, str]]:
    """``stan://[user:pass@]host[:port][,host2[:port]][?cluster_id=..&client_id=..]``
    -> (nats-py server URLs, query options)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigurationError(f"not a NATS Streaming URL (stan://host:port): {url!r}")
    netloc, _, query = rest.partition("?")
    netloc = netloc.rstrip("/")
    if not netloc:
        raise ConfigurationError(f"no host in {url!r}")
    servers = []
    for part in netloc.split(","):
        part = part.strip()
        host = part.rpartition("@")[2]
        if not host:
            raise ConfigurationError(f"empty host in {url!r}")
        has_port = "]:" in host if host.startswith("[") else ":" in host
        servers.append(f"nats://{part}" if has_port else f"nats://{part}:{DEFAULT_PORT}")
    params = {key: unquote(values[-1]) for key, values in parse_qs(query).items()}
    unknown = set(params) - {"cluster_id", "client_id"}
    if unknown:
        raise ConfigurationError(f"unknown query option(s) in {url!r}: {sorted(unknown)}")
    return servers, params


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
    closed_cb: Callable[[], Any] | None = None,
) -> NatsClient:
    """Open the NATS connection a session runs on, with errors that say what failed."""
    errors: list[Exception] = []
    connecting = True

    tls_failed = asyncio.Event()

    async def error_cb(exc: Exception) -> None:
        if connecting:
            errors.append(exc)
            if isinstance(exc, ssl.SSLError):
                tls_failed.set()
        else:
            logger.warning("NATS connection of %s: %s", name, exc)

    async def disconnected_cb() -> None:
        # nats-py calls this on close() too; only an outage is worth a warning.
        if not connecting and not nc.is_closed:
            logger.warning("%s disconnected from the NATS server; reconnecting", name)

    async def reconnected_cb() -> None:
        url = nc.connected_url
        logger.info("%s reconnected to the NATS server at %s", name, url.netloc if url else "?")

    kwargs: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "disconnected_cb": disconnected_cb,
        "reconnected_cb": reconnected_cb,
        "connect_timeout": connect_timeout,
        "allow_reconnect": True,
        # The client checks the subjects it is given itself, once per subject; every
        # other subject it publishes to comes from the server (see StanClient).
        "skip_subject_validation": True,
        # The first connection tries each server twice, quickly, then gives up with
        # the reason; the limits for later reconnects are set once it is up.
        "reconnect_time_wait": 0.05,
        "max_reconnect_attempts": 1,
        "error_cb": error_cb,
    }
    if user is not None:
        kwargs["user"] = user
    if password is not None:
        kwargs["password"] = password
    if token is not None:
        kwargs["token"] = token
    if creds_file is not None:
        kwargs["user_credentials"] = creds_file
    if tls is not None:
        kwargs["tls"] = tls
    if tls_hostname is not None:
        kwargs["tls_hostname"] = tls_hostname
    if closed_cb is not None:
        kwargs["closed_cb"] = closed_cb
    nc = NatsClient()
    try:
        await _first_connect(nc, kwargs, tls_failed, bound=2 * len(servers) * connect_timeout + 1)
    except Exception as exc:
        seen = [*errors, exc]
        if any(_is_auth_error(e) for e in seen):
            raise AuthenticationError(
                f"the NATS server at {', '.join(servers)} refused the credentials: "
                f"{_describe(seen)}"
            ) from exc
        raise ConnectError(
            f"could not connect to the NATS server at {', '.join(servers)}: {_describe(seen)}"
        ) from exc
    finally:
        connecting = False
    # nats-py reads these on every reconnect. Like the Go and Node streaming clients,
    # retry forever by default: while the streaming server still knows the client, a
    # reconnect resumes everything, and PINGs tell when it does not.
    nc.options["reconnect_time_wait"] = reconnect_time_wait
    nc.options["max_reconnect_attempts"] = max_reconnect_attempts
    return nc


async def _first_connect(
    nc: NatsClient, kwargs: dict[str, Any], tls_failed: asyncio.Event, *, bound: float
) -> None:
    """``nc.connect(**kwargs)``, given up on a TLS failure or after ``bound`` seconds.

    After a failed TLS handshake nats-py 2.16 waits forever for the socket to close
    before it tries again; the error has been reported by then, so stop there.
    """
    connecting = asyncio.ensure_future(nc.connect(**kwargs))
    tls_waiter = asyncio.ensure_future(tls_failed.wait())
    try:
        await asyncio.wait(
            {connecting, tls_waiter}, timeout=bound, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        tls_waiter.cancel()
    if connecting.done():
        connecting.result()
        return
    connecting.cancel()
    await asyncio.wait({connecting}, timeout=1)
    if tls_failed.is_set():
        raise ConnectError("TLS handshake failed")
    raise ConnectError(f"no connection within {bound:.0f}s")


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization" in text


def _describe(errors: list[Exception]) -> str:
    parts = []
    for exc in errors:
        text = str(exc) or type(exc).__name__
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


async def connect(
    url: str,
    *,
    cluster_id: str | None = None,
    client_id: str | None = None,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    creds_file: str | None = None,
    tls: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
    nats_connection: NatsClient | None = None,
    connect_timeout: float = 2.0,
    publish_timeout: float = 30.0,
    max_pub_acks_inflight: int = 16384,
    ping_interval: float = 5.0,
    ping_max_out: int = 3,
    handler_grace: float = 5.0,
    reconnect_time_wait: float = 2.0,
    max_reconnect_attempts: int = -1,
    on_connection_lost: ConnectionLostCallback | None = None,
) -> StanTransport:
    """Open a NATS Streaming session and return it as a ``Transport``.

    ``url`` is ``stan://host:port[,host2:port]``; ``cluster_id`` (default
    ``test-cluster``) and ``client_id`` (default: a fresh random one) may also come from
    its query string. ``user``/``password``/``token``/``creds_file``/``tls`` go to nats-py.
    Pass ``nats_connection`` to run on a NATS connection you own (it is not closed).

    ``close()`` waits up to ``handler_grace`` seconds for running handlers.
    ``on_connection_lost`` is called (it may be a coroutine function) with a
    ``ConnectionLost`` when the server forgets this client or stops answering PINGs;
    subscriptions stop and publishes fail from then on.
    """
    servers, params = parse_url(url)
    cluster = cluster_id or params.get("cluster_id") or DEFAULT_CLUSTER_ID
    client = client_id or params.get("client_id") or new_client_id()
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
        handler_grace=handler_grace,
    )
    stan: StanClient | None = None

    async def closed_cb() -> None:
        if stan is not None:
            await stan.nats_closed()

    owns = nats_connection is None
    if nats_connection is None:
        nc = await connect_nats(
            servers,
            name=client,
            user=user,
            password=password,
            token=token,
            creds_file=creds_file,
            tls=tls,
            tls_hostname=tls_hostname,
            connect_timeout=connect_timeout,
            reconnect_time_wait=reconnect_time_wait,
            max_reconnect_attempts=max_reconnect_attempts,
            closed_cb=closed_cb,
        )
    else:
        nc = nats_connection
    stan = await StanClient.connect(
        nc,
        cluster_id=cluster,
        client_id=client,
        options=options,
        owns_connection=owns,
        on_connection_lost=on_connection_lost,
    )
    return StanTransport(stan, url)
