"""One nats-py connection as both NATS transports open it.

``open_nats()`` connects with errors that say what failed (refused credentials and a
failed TLS handshake end the attempt at once; otherwise each server is tried briefly and
the reasons are listed), logs outages and reconnects without any secret, and reports a
loss for good once through a ``ConnectionLostFanout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.errors import UnexpectedEOF

from common_events.errors import AuthenticationError, ConnectError, ConnectionLost
from common_events.transports.base import ConnectionLostCallback
from common_events.transports.nats_connection.credentials import (
    UserKey,
    read_creds_file,
    read_seed_file,
)
from common_events.transports.nats_connection.direct import DirectDeliveries
from common_events.transports.nats_connection.errors import (
    Operation,
    classify_nats_error,
    is_auth_failure,
    is_tls_failure,
)
from common_events.transports.nats_connection.lost import ConnectionLostFanout
from common_events.transports.nats_connection.options import NatsOptions
from common_events.transports.nats_connection.outage import OutageLog
from common_events.transports.nats_connection.servers import ServerList
from common_events.transports.nats_connection.state import (
    Closed,
    Connected,
    Connecting,
    ConnectionState,
    Lost,
    Reconnecting,
)
from common_events.transports.nats_connection.tls import TlsOnlyClient

logger = logging.getLogger(__name__)

# nats-py 2.16 added client-side subject validation, and the keyword that turns it off;
# older releases validate nothing and refuse the keyword.
_NATS_VALIDATES_SUBJECTS = "skip_subject_validation" in inspect.signature(Client.connect).parameters

ErrorListener = Callable[[Exception], bool]
"""Sees each asynchronous error of the connection; returns whether it dealt with it."""

# How long closing a connection whose socket broke may take: nats-py waits for a
# socket that never reports closed after a failed TLS handshake.
_ABANDON_TIMEOUT = 1.0


class _TlsOnlyDirectClient(DirectDeliveries, TlsOnlyClient):
    """Refuses a server in the clear (``TlsOnlyClient``) and hands payloads straight to
    a callback (``DirectDeliveries``)."""


class _FirstConnectFailed(Exception):
    """The first connection was given up; the reasons are in ``_connect_errors``."""

    def __str__(self) -> str:
        return "no server answered"


class NatsConnection:
    """A nats-py ``Client`` plus its state, its loss reporting and its log lines."""

    def __init__(
        self,
        servers: ServerList,
        options: NatsOptions,
        *,
        owned: bool = True,
        direct_deliveries: bool = False,
    ) -> None:
        self.servers = servers
        self.options = options
        # TLS is wanted when any server is tls:// or a TLS context is given; then a
        # server that does not require it is refused rather than spoken to in the clear.
        wants_tls = options.tls is not None or any(
            server.startswith("tls://") for server in servers.servers
        )
        # NATS Streaming's connections hand deliveries straight to their subscriptions
        # (``direct``); others keep nats-py's client as it is.
        client_class: type[Client]
        if direct_deliveries:
            client_class = _TlsOnlyDirectClient if wants_tls else DirectDeliveries
        else:
            client_class = TlsOnlyClient if wants_tls else Client
        self.client = client_class()
        self.owned = owned
        self.lost = ConnectionLostFanout()
        self._state: ConnectionState = Connecting()
        self._state_changed = asyncio.Event()
        self._error_listeners: list[ErrorListener] = []
        self._connect_errors: list[BaseException] = []
        self._fatal = asyncio.Event()
        self._closing_tasks: set[asyncio.Future[None]] = set()
        self._user_key: UserKey | None = None
        # Refusals of our credentials since the connection was last up, and the
        # refusal that ended it, if one did.
        self._refusals = 0
        self._refused: BaseException | None = None
        # One log line per change of state during an outage, not one per attempt.
        self._outage = OutageLog(
            self.name, len(servers.servers) or 1, options.max_reconnect_attempts,
            options.reconnect_time_wait,
        )

    @classmethod
    def adopt(cls, client: Client, *, name: str | None = None) -> NatsConnection:
        """Wrap a connection the caller made and keeps: closing leaves it open."""
        connection = cls(ServerList(()), NatsOptions(name=name), owned=False)
        connection.client = client
        connection._state = Connected()
        return connection

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        """Up now; a connection the caller made (``adopt``) is asked directly."""
        if not isinstance(self._state, Connected):
            return False
        return self.owned or self.client.is_connected

    def _set_state(self, state: ConnectionState) -> None:
        self._state = state
        changed, self._state_changed = self._state_changed, asyncio.Event()
        changed.set()

    async def wait_for_state(self, *kinds: type[ConnectionState]) -> ConnectionState:
        """Return the state once it is one of ``kinds`` (use with a timeout)."""
        while not isinstance(self._state, kinds):
            await self._state_changed.wait()
        return self._state

    @property
    def name(self) -> str:
        return self.options.name or "common-events"

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        self.lost.add(callback)

    def add_error_listener(self, listener: ErrorListener) -> None:
        self._error_listeners.append(listener)

    @property
    def credentials_refused(self) -> bool:
        """The server refused this connection's credentials (revoked, expired): lost for
        a reason that reconnecting cannot fix."""
        return self._refused is not None

    def check_usable(self, what: str) -> Client:
        """The client, or the error that says why it cannot be used for ``what``."""
        state = self._state
        if isinstance(state, Lost):
            if self._refused is not None:
                raise AuthenticationError(f"{what}: {state.error}")
            raise ConnectionLost(f"{what}: {state.error}")
        if isinstance(state, Closed):
            raise ConnectionLost(f"{what}: the connection is closed")
        if not self.owned and self.client.is_closed:
            raise ConnectionLost(f"{what}: the NATS connection is closed")
        return self.client

    # -- connecting ----------------------------------------------------------------------

    async def open(self) -> None:
        options = self.options
        try:
            # Before anything is sent: a file that cannot work says why now.
            if options.creds_file is not None:
                self._user_key = read_creds_file(options.creds_file)
            elif options.nkeys_seed is not None:
                self._user_key = read_seed_file(options.nkeys_seed)
        except BaseException:
            self._set_state(Closed())
            raise
        kwargs: dict[str, Any] = {
            "servers": list(self.servers.servers),
            "name": self.name,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
            "connect_timeout": options.connect_timeout,
            "allow_reconnect": True,
            # The first connection tries each server twice, quickly, then gives up with
            # the reasons; the limits for later reconnects are set once it is up.
            "reconnect_time_wait": 0.05,
            "max_reconnect_attempts": 1,
            # Shuffled, so that the instances of a service spread over a cluster.
            "dont_randomize": False,
        }
        if options.skip_subject_validation and _NATS_VALIDATES_SUBJECTS:
            kwargs["skip_subject_validation"] = True
        for option, value in (
            ("user", options.user),
            ("password", options.password),
            ("token", options.token),
            ("user_credentials", None if options.creds_file is None else str(options.creds_file)),
            ("nkeys_seed", None if options.nkeys_seed is None else str(options.nkeys_seed)),
            ("tls", options.tls),
            ("tls_hostname", options.tls_hostname),
        ):
            if value is not None:
                kwargs[option] = value
        bound = 2 * len(self.servers.servers) * options.connect_timeout + 1
        try:
            await self._first_connect(kwargs, bound)
        except BaseException as error:
            await self._abandon()
            self._set_state(Closed())
            if isinstance(error, Exception):
                raise self._connect_error(error) from None
            raise
        # nats-py reads these on every reconnect.
        self.client.options["reconnect_time_wait"] = options.reconnect_time_wait
        self.client.options["max_reconnect_attempts"] = options.max_reconnect_attempts
        self._set_state(Connected())
        logger.debug("%s connected to %s", self.name, self._server_now())

    async def _first_connect(self, kwargs: dict[str, Any], bound: float) -> None:
        connecting = asyncio.ensure_future(self.client.connect(**kwargs))
        fatal = asyncio.ensure_future(self._fatal.wait())
        try:
            await asyncio.wait({connecting, fatal}, timeout=bound,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            fatal.cancel()
        if connecting.done():
            connecting.result()
            return
        connecting.cancel()
        await asyncio.wait({connecting}, timeout=_ABANDON_TIMEOUT)
        if not self._fatal.is_set():
            self._connect_errors.append(TimeoutError(f"no connection within {bound:.0f}s"))
        raise _FirstConnectFailed

    def _connect_error(self, error: Exception) -> Exception:
        seen = list(self._connect_errors)
        if not isinstance(error, _FirstConnectFailed) or not seen:
            seen.append(error)
        where = self.servers.display
        reasons = _describe(seen)
        if any(is_auth_failure(e) for e in seen):
            return AuthenticationError(
                f"NATS at {where} refused the credentials ({reasons}): {self._refusal_hint()}"
            )
        if any(isinstance(e, nats.errors.SecureConnWantedError) for e in seen):
            return ConnectError(
                f"NATS at {where} does not offer TLS, which tls:// or tls= asks for; "
                "nothing was sent (enable TLS on the server, or use nats://)"
            )
        if any(is_tls_failure(e) for e in seen):
            return ConnectError(
                f"TLS with NATS at {where} failed ({reasons}); pass "
                "tls=ssl.create_default_context(cafile=...) trusting the server's CA"
            )
        return ConnectError(f"could not connect to NATS at {where}: {reasons}")

    def _refusal_hint(self) -> str:
        if self._user_key is not None:
            return self._user_key.refusal_hint()
        if self.options.user is not None:
            return "check the user and password"
        if self.options.token is not None:
            return "check the token"
        return (
            "the server wants credentials: pass user/password, token, creds_file or "
            "nkeys_seed"
        )

    async def _abandon(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), _ABANDON_TIMEOUT)

    # -- nats-py callbacks ---------------------------------------------------------------

    async def _on_error(self, error: Exception) -> None:
        if isinstance(self._state, Connecting):
            self._connect_errors.append(error)
            if is_auth_failure(error) or is_tls_failure(error):
                # Retrying cannot fix these; after a failed TLS handshake nats-py would
                # even wait forever on the broken socket.
                self._fatal.set()
            return
        for listener in self._error_listeners:
            if listener(error):
                return
        if is_auth_failure(error):
            self._refused_on_reconnect(error)
            return
        failure = classify_nats_error(error, Operation.REQUEST, "NATS connection")
        text = str(failure.error) if failure is not None else f"{type(error).__name__}: {error}"
        if isinstance(self._state, Reconnecting):
            self._outage.attempt_failed(text.removeprefix("NATS connection: "))
        elif isinstance(error, UnexpectedEOF) and isinstance(self._state, Connected):
            # nats-py reconnects next: the disconnect line says why, once.
            self._outage.dropped_because(text.removeprefix("NATS connection: "))
        else:
            logger.warning("%s: %s", self.name, text)

    def _refused_on_reconnect(self, error: Exception) -> None:
        """nats-py reports a refused reconnect as a plain error and tries again; say once
        what it means, and give up when every server refused twice in a row (as the Go
        client does): credentials that were revoked or expired stay refused."""
        self._refusals += 1
        detail = str(error).removeprefix("nats: ").strip()
        if self._refusals == 1:
            logger.warning("%s: NATS refused the credentials on reconnect (%s); retrying",
                           self.name, detail)
        if self._refusals >= 2 * max(1, len(self.servers.servers)) and self._refused is None:
            self._refused = error
            task = asyncio.ensure_future(self.client.close())
            self._closing_tasks.add(task)
            task.add_done_callback(self._closing_tasks.discard)

    async def _on_disconnected(self) -> None:
        # nats-py calls this on close() too; only an outage is worth a warning.
        if isinstance(self._state, Connected) and not self.client.is_closed:
            self._set_state(Reconnecting())
            self._outage.began()

    async def _on_reconnected(self) -> None:
        self._refusals = 0
        outage = self._outage.ended() if isinstance(self._state, Reconnecting) else ""
        if isinstance(self._state, Reconnecting | Connected):
            self._set_state(Connected())
        logger.info("%s reconnected to NATS at %s%s", self.name, self._server_now(), outage)

    async def _on_closed(self) -> None:
        if isinstance(self._state, Connected | Reconnecting):
            servers = self.servers.display or "given by the caller"
            refusal = self._refused or self.client.last_error
            if refusal is not None and is_auth_failure(refusal):
                # The server revoked or expired the credentials (it closes the connection
                # with that reason), or refused every reconnect.
                self._refused = refusal
                detail = str(refusal).removeprefix("nats: ").strip(" '") or "refused"
                error = ConnectionLost(
                    f"the NATS connection of {self.name} closed and will not reconnect: "
                    f"NATS ({servers}) refused the credentials ({detail}): "
                    f"{self._refusal_hint()}"
                )
            else:
                error = ConnectionLost(
                    f"the NATS connection of {self.name} closed and will not reconnect "
                    f"(servers: {servers})"
                )
            self._set_state(Lost(error))
            logger.error("%s", error)
            self.lost.fire(error)

    def _server_now(self) -> str:
        url = self.client.connected_url
        if url is None:
            return "?"
        # The URL nats-py holds is one of ours (no credentials) or one the server
        # announced; print host and port only, whatever it carries.
        return f"{url.hostname}:{url.port}"

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Flush what is buffered (the last acks) and close; idempotent. A connection the
        caller owns (``adopt``) is left open."""
        if isinstance(self._state, Closed):
            return
        self._set_state(Closed())
        if self.owned and not self.client.is_closed:
            with contextlib.suppress(Exception):
                await self.client.close()

    def __repr__(self) -> str:
        return f"<NatsConnection {self.name} {type(self._state).__name__} {self.servers.display}>"


def _describe(errors: list[BaseException]) -> str:
    parts: list[str] = []
    for error in errors:
        text = str(error).removeprefix("nats: ").strip() or type(error).__name__
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


async def open_nats(
    servers: ServerList,
    options: NatsOptions,
    *,
    on_error: ErrorListener | None = None,
    direct_deliveries: bool = False,
) -> NatsConnection:
    """Connect to the first server of ``servers`` that answers. ``direct_deliveries``:
    the client is a ``DirectDeliveries`` (``subscribe_payloads`` skips nats-py's
    per-message machinery on it)."""
    connection = NatsConnection(
        servers, options.with_credentials_of(servers), direct_deliveries=direct_deliveries
    )
    if on_error is not None:
        connection.add_error_listener(on_error)
    await connection.open()
    return connection
