"""The JetStream transport: one nats-py connection, one stream, push consumers.

Publishing is a JetStream publish with headers (``Nats-Msg-Id`` for de-duplication, the
content type, the package version), retried with the same message id until the publish
timeout, so a publish that raced a server failure is stored once. Each subscription is
a push consumer (``consumers.py`` chooses it, ``subscription.py`` runs it); refusals of
the server become errors of the call that caused them (``permissions.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import ssl
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import api

from common_events.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    PermissionDenied,
    PublishError,
    PublishTimeout,
    StreamConflict,
    SubscribeError,
    TransportClosed,
    TransportError,
)
from common_events.transports.base import (
    ConnectionLostCallback,
    MessageHandler,
    PublishAck,
    SubscriptionOptions,
    TransportSubscription,
)
from common_events.transports.batch import publish_with_workers
from common_events.transports.jetstream.consumers import ConsumerPlan, plan_consumer
from common_events.transports.jetstream.options import JetStreamOptions, parse_servers, redact
from common_events.transports.jetstream.permissions import PermissionWatch
from common_events.transports.jetstream.streams import (
    ExistingStream,
    StreamSpec,
    event_subjects,
    stream_differences,
)
from common_events.transports.jetstream.subscription import (
    JetStreamSubscription,
)

logger = logging.getLogger("common_events.transports.jetstream")

T = TypeVar("T")

_EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})
_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.I)
_AUTH_FAILURES = (
    "authorization violation",
    "authentication timeout",
    "authentication expired",
    "user authentication revoked",
)
# JetStream API error codes (nats-server's errors.json) met while connecting.
_JS_NOT_ENABLED_FOR_ACCOUNT = 10039
_JS_NOT_ENABLED = 10076
_STREAM_NAME_IN_USE = 10058
_SUBJECTS_OVERLAP = 10065
_INSUFFICIENT_RESOURCES = 10023
_NO_SUITABLE_PEERS = 10005


def _version() -> str:
    # Imported here, not at module level: the package's __init__ imports the core,
    # which may import this module while __init__ is still running.
    import common_events

    return str(getattr(common_events, "__version__", "0"))


class JetStreamTransport:
    """A connection to NATS with JetStream; made by ``connect()``."""

    def __init__(self, url: str, options: JetStreamOptions) -> None:
        self._url = url
        self.options = options
        self._servers = parse_servers(url)
        self._client: Client | None = None
        self._js: Any = None
        self._jsm: Any = None
        self._version = _version()
        self._watch = PermissionWatch()
        self._subscriptions: list[JetStreamSubscription] = []
        self._stream_subjects: frozenset[str] = frozenset(event_subjects())
        self._connecting = False
        self._connect_failures: list[str] = []
        self._closing = False
        self._closed = False
        self._lost = False
        self._lost_callbacks: list[ConnectionLostCallback] = []
        self._publish_slots = asyncio.Semaphore(options.max_pending_publishes)

    # -- connection -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def stream(self) -> str:
        return self.options.stream

    @property
    def client(self) -> Client:
        """The nats-py connection underneath, for tools and tests."""
        if self._client is None:
            raise TransportClosed("the JetStream transport is not connected")
        return self._client

    async def _open(self) -> None:
        options = self.options
        client = Client()
        self._connecting = True
        kwargs: dict[str, Any] = {
            "servers": self._servers,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
            "connect_timeout": options.connect_timeout,
            "reconnect_time_wait": options.reconnect_time_wait,
            "max_reconnect_attempts": options.max_reconnect_attempts,
            "name": options.name,
            "user": options.user,
            "password": options.password,
            "token": options.token,
            # Shuffled, so that the instances of a service spread over a cluster's nodes.
            "dont_randomize": False,
        }
        if options.creds_file is not None:
            kwargs["user_credentials"] = str(options.creds_file)
        if options.tls is not None:
            kwargs["tls"] = options.tls
        if options.tls_hostname is not None:
            kwargs["tls_hostname"] = options.tls_hostname
        where = ", ".join(redact(server) for server in self._servers)
        try:
            await client.connect(**kwargs)
        except ConnectError:
            self._closing = True
            await self._abandon(client)
            raise
        except (OSError, nats.errors.Error, TimeoutError) as error:
            self._closing = True
            await self._abandon(client)
            reasons = "; ".join(self._connect_failures) or str(error) or type(error).__name__
            raise ConnectError(f"could not connect to NATS at {where}: {reasons}") from None
        finally:
            self._connecting = False
        self._client = client
        self._js = client.jetstream(timeout=options.request_timeout)
        self._jsm = client.jsm(timeout=options.request_timeout)
        try:
            await self._ensure_stream()
        except ConnectError as error:
            await self._shutdown_client()
            # Say which server: with several environments the URL is half the answer.
            raise type(error)(f"NATS at {where}: {error}") from None
        except BaseException:
            await self._shutdown_client()
            raise
        logger.info("connected to %s, stream %s", where, options.stream)

    async def _abandon(self, client: Client) -> None:
        """Close a client whose first connection failed.

        Bounded: after a failed TLS handshake nats-py waits for a socket that never
        reports closed.
        """
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), min(self.options.connect_timeout, 1.0))

    async def _ensure_stream(self) -> None:
        options = self.options
        spec = StreamSpec(
            name=options.stream,
            subjects=event_subjects(),
            replicas=options.replicas,
            duplicate_window=options.duplicate_window,
        )
        info = await self._stream_info(spec.name)
        if info is None:
            info = await self._create_stream(spec)
            if info is None:
                return
        existing = _existing_stream(info)
        problems = stream_differences(existing, spec)
        if problems:
            raise StreamConflict(
                f"stream {spec.name} exists but cannot be used as it is: "
                + "; ".join(problems)
                + ". Nothing was changed; fix the stream or configure another stream name."
            )
        self._stream_subjects = frozenset(existing.subjects) | frozenset(spec.subjects)

    async def _api(self, awaitable: Awaitable[T], what: str) -> T:
        """A JetStream API request, with its refusals turned into clear errors."""
        try:
            return await self._watch.run("publish", "$JS.API.", awaitable, prefix=True)
        except PermissionDenied as error:
            raise PermissionDenied(
                f"{what}: the user may not use the JetStream API ({error})"
            ) from None
        except nats.js.errors.ServiceUnavailableError as error:
            if error.err_code in (_JS_NOT_ENABLED_FOR_ACCOUNT, _JS_NOT_ENABLED) or (
                error.err_code is None
            ):
                raise ConnectError(
                    f"{what}: JetStream is not enabled on this server or account "
                    "(start nats-server with -js, or enable JetStream for the account)"
                ) from None
            raise TransportError(f"{what}: JetStream is unavailable: {error.description}") from None
        except nats.errors.TimeoutError:
            raise TransportError(
                f"{what}: JetStream did not answer within {self.options.request_timeout:g}s "
                "(is JetStream enabled and does the cluster have a meta leader?)"
            ) from None
        except nats.errors.ConnectionClosedError:
            raise ConnectionLost(f"{what}: the connection is closed") from None

    async def _stream_info(self, name: str) -> api.StreamInfo | None:
        try:
            info: api.StreamInfo = await self._api(
                self._jsm.stream_info(name), f"reading stream {name}"
            )
        except nats.js.errors.NotFoundError:
            return None
        except TransportError as error:
            if isinstance(error, ConnectError):
                raise
            raise ConnectError(str(error)) from None
        return info

    async def _create_stream(self, spec: StreamSpec) -> api.StreamInfo | None:
        config = api.StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            num_replicas=spec.replicas,
            duplicate_window=spec.duplicate_window or 0,
        )
        try:
            info: api.StreamInfo = await self._api(
                self._jsm.add_stream(config), f"creating stream {spec.name}"
            )
        except nats.js.errors.APIError as error:
            if error.err_code == _STREAM_NAME_IN_USE:
                # Another service created it a moment ago; check it like any other.
                return await self._stream_info(spec.name)
            if error.err_code == _SUBJECTS_OVERLAP:
                owner = await self._owner_of(spec.subjects)
                raise StreamConflict(
                    f"cannot create stream {spec.name}: its subjects are already stored by "
                    f"{owner or 'another stream'}. Nothing was changed; use that stream "
                    "(stream=...) or remove the overlap."
                ) from None
            if error.err_code in (_INSUFFICIENT_RESOURCES, _NO_SUITABLE_PEERS):
                raise ConnectError(
                    f"cannot create stream {spec.name} with {spec.replicas} replica(s): "
                    f"{error.description}"
                ) from None
            raise ConnectError(
                f"cannot create stream {spec.name}: {error.description or error}"
            ) from None
        except TransportError as error:
            if isinstance(error, ConnectError):
                raise
            raise ConnectError(str(error)) from None
        logger.info(
            "created stream %s (file storage, %d replica(s), %d subjects)",
            spec.name,
            spec.replicas,
            len(spec.subjects),
        )
        return info

    async def _owner_of(self, subjects: tuple[str, ...]) -> str | None:
        for subject in subjects:
            with contextlib.suppress(Exception):
                name = await self._jsm.find_stream_name_by_subject(subject)
                if name:
                    return f"stream {name}"
        return None

    # -- callbacks from nats-py ----------------------------------------------------------

    async def _on_error(self, error: Exception) -> None:
        text = str(error)
        lowered = text.lower()
        if self._connecting:
            # nats-py retries the first connection like a reconnect and reports each
            # failure here; refusals that retrying cannot fix end the attempt now.
            if isinstance(error, nats.errors.AuthorizationError) or any(
                marker in lowered for marker in _AUTH_FAILURES
            ):
                servers = ", ".join(redact(server) for server in self._servers)
                raise AuthenticationError(
                    f"NATS at {servers} refused the credentials "
                    f"({text.removeprefix('nats: ').strip()!s}): " + self._credential_hint()
                )
            if isinstance(error, ssl.SSLError):
                # Another attempt would fail the same way (and nats-py hangs on the
                # broken socket), so stop at the first.
                servers = ", ".join(redact(server) for server in self._servers)
                raise ConnectError(
                    f"TLS with NATS at {servers} failed: {text}; pass "
                    "tls=ssl.create_default_context(cafile=...) trusting the server's CA"
                )
            self._connect_failures.append(text or type(error).__name__)
            if len(self._connect_failures) >= len(self._servers):
                servers = ", ".join(redact(server) for server in self._servers)
                raise ConnectError(
                    f"could not connect to NATS at {servers}: " + "; ".join(self._connect_failures)
                )
            return
        match = _VIOLATION.search(text)
        if match is not None:
            kind, subject = match.group(1).lower(), match.group(2)
            if not self._watch.violation(kind, subject, text.removeprefix("nats: ")):
                logger.error("NATS refused %s to %r: permission denied", kind, subject)
            return
        if isinstance(error, nats.errors.SlowConsumerError):
            logger.warning(
                "slow consumer on %s: messages dropped locally will be redelivered",
                error.subject,
            )
            return
        # Mostly a lost socket that nats-py is about to re-establish; if it cannot,
        # _on_closed says so as an error.
        logger.warning("NATS connection error: %s", text or type(error).__name__)

    def _credential_hint(self) -> str:
        options = self.options
        if options.token is not None:
            return "the token was not accepted"
        if options.user is not None or any("@" in server for server in self._servers):
            return "the user or password was not accepted"
        if options.creds_file is not None:
            return "the credentials file was not accepted"
        return "the server requires credentials and none were given (user/password, token=...)"

    async def _on_disconnected(self) -> None:
        if not (self._closing or self._connecting):
            logger.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        client = self._client
        where = client.connected_url.netloc if client and client.connected_url else "?"
        logger.warning("reconnected to NATS at %s", where.rsplit("@", 1)[-1])

    async def _on_closed(self) -> None:
        if not (self._closing or self._connecting):
            self._lost = True
            error = ConnectionLost("the NATS connection closed for good (no server reachable)")
            logger.error("%s", error)
            for callback in self._lost_callbacks:
                try:
                    result = callback(error)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("connection-lost callback failed")

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        self._lost_callbacks.append(callback)

    # -- publishing ----------------------------------------------------------------------

    def _check_open(self) -> Client:
        if self._closed or self._closing:
            raise TransportClosed("the JetStream transport is closed")
        if self._lost or self._client is None or self._client.is_closed:
            raise ConnectionLost("the connection to NATS is gone")
        return self._client

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        return await publish_with_workers(
            self.publish, subject, payloads, workers=self.options.max_pending_publishes
        )

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.publish_timeout
        # A bounded number of publishes wait on the server at once; the rest wait here.
        # Without the bound a burst of thousands makes replies late, late replies cause
        # retries, and retries add load: each publish would time out.
        try:
            if self._publish_slots.locked():
                async with asyncio.timeout_at(deadline):
                    await self._publish_slots.acquire()
            else:
                await self._publish_slots.acquire()  # free: no timer needed
        except TimeoutError:
            raise PublishTimeout(
                f"publish to {subject!r} not sent within {self.options.publish_timeout:g}s: "
                f"{self.options.max_pending_publishes} publishes were waiting on the server"
            ) from None
        try:
            return await self._publish(subject, data, headers, deadline)
        finally:
            self._publish_slots.release()

    async def _publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None, deadline: float
    ) -> PublishAck:
        message_headers = {
            "Nats-Msg-Id": uuid.uuid4().hex,
            "Content-Type": "application/json",
            "Common-Events-Version": self._version,
        }
        if headers:
            message_headers.update(headers)
        loop = asyncio.get_running_loop()
        attempt = 0
        backoff = 0.05
        last_problem = "no reply"
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
                        timeout=max(0.05, min(remaining, self.options.publish_attempt_timeout)),
                        headers=message_headers,
                    ),
                )
            except PermissionDenied as error:
                raise PermissionDenied(
                    f"NATS refused the publish to {subject!r} ({error}): the user may not "
                    "publish there; nothing was stored"
                ) from None
            except nats.js.errors.NoStreamResponseError:
                if subject not in self._stream_subjects:
                    raise PublishError(
                        f"no JetStream stream stores {subject!r} "
                        f"(stream {self.options.stream} stores the event subjects)"
                    ) from None
                last_problem = "no stream answered (leader election?)"
            except nats.errors.TimeoutError:
                last_problem = f"no reply within {self.options.publish_attempt_timeout:g}s"
            except nats.js.errors.ServiceUnavailableError as error:
                last_problem = f"JetStream unavailable ({error.description})"
            except nats.js.errors.APIError as error:
                raise PublishError(
                    f"JetStream refused the publish to {subject!r}: {error.description or error}"
                ) from None
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                if self._closing or self._closed:
                    raise TransportClosed("the JetStream transport is closed") from None
                raise ConnectionLost(
                    f"the connection closed while publishing to {subject!r}"
                ) from None
            except (nats.errors.ConnectionReconnectingError, nats.errors.OutboundBufferLimitError):
                last_problem = "the connection is re-establishing"
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
                    f"{self.options.publish_timeout:g}s after {attempt} attempt(s): "
                    f"{last_problem}"
                )
            logger.debug("publish to %s attempt %d: %s; retrying", subject, attempt, last_problem)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    # -- subscribing ---------------------------------------------------------------------

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription:
        client = self._check_open()
        if options.ack_wait <= 0:
            raise ConfigurationError("ack_wait must be positive")
        plan = plan_consumer(
            subject,
            options,
            stream=self.options.stream,
            deliver_prefix=self.options.deliver_prefix,
            ephemeral_inactive_threshold=self.options.ephemeral_inactive_threshold,
        )
        await self._bind_consumer(plan)
        subscription = JetStreamSubscription(self, subject, handler, plan)
        try:
            await subscription.start(client)
            await self._watch.run("subscription", plan.deliver_subject, _round_trip(client))
        except PermissionDenied as error:
            await subscription.stop()
            raise SubscribeError(
                f"NATS refused the subscription to {plan.deliver_subject!r} "
                f"(deliveries of {subject!r}): {error}"
            ) from None
        except nats.errors.Error as error:
            await subscription.stop()
            raise SubscribeError(f"could not subscribe to {subject!r}: {error}") from None
        self._subscriptions.append(subscription)
        logger.debug("subscribed to %s via consumer %s", subject, plan.name)
        return subscription

    async def _bind_consumer(self, plan: ConsumerPlan) -> None:
        """Create the consumer, or update the settings of an existing one that may change.

        A durable keeps its position: an existing consumer keeps its deliver policy even
        when this subscription asks for another, as a STAN durable would.
        """
        what = f"subscribing to {plan.filter_subject!r}"
        existing: api.ConsumerInfo | None = None
        try:
            existing = await self._api(
                self._jsm.consumer_info(self.options.stream, plan.name), what
            )
        except nats.js.errors.NotFoundError:
            existing = None
        except PermissionDenied as error:
            raise SubscribeError(str(error)) from None
        except nats.js.errors.APIError as error:
            raise SubscribeError(f"{what}: {error.description or error}") from None
        deliver_policy = api.DeliverPolicy.ALL if plan.deliver_all else api.DeliverPolicy.NEW
        if existing is not None and existing.config.deliver_policy is not None:
            deliver_policy = existing.config.deliver_policy
        config = api.ConsumerConfig(
            name=plan.name,
            durable_name=plan.name if plan.durable else None,
            deliver_policy=deliver_policy,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=plan.ack_wait,
            max_deliver=plan.max_deliver if plan.max_deliver is not None else -1,
            max_ack_pending=plan.max_ack_pending,
            filter_subject=plan.filter_subject,
            deliver_subject=plan.deliver_subject,
            deliver_group=plan.deliver_group,
            inactive_threshold=plan.inactive_threshold,
        )
        if existing is not None and _same_consumer(existing.config, config):
            return
        try:
            await self._api(self._jsm.add_consumer(self.options.stream, config), what)
        except PermissionDenied as error:
            raise SubscribeError(str(error)) from None
        except nats.js.errors.APIError as error:
            raise SubscribeError(
                f"{what}: JetStream refused consumer {plan.name}: {error.description or error}"
            ) from None

    # -- what subscriptions ask of their transport (SubscriptionOwner) -----------------

    @property
    def connection(self) -> Client | None:
        return self._client

    @property
    def close_timeout(self) -> float:
        return self.options.close_timeout

    def forget(self, subscription: JetStreamSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    async def delete_consumer(self, name: str) -> None:
        client = self._client
        if client is None or client.is_closed:
            raise TransportClosed("cannot remove the durable: the transport is closed")
        try:
            await self._api(
                self._jsm.delete_consumer(self.options.stream, name),
                f"removing consumer {name}",
            )
        except nats.js.errors.NotFoundError:
            pass
        except nats.js.errors.APIError as error:
            raise SubscribeError(f"could not remove consumer {name}: {error.description}") from None

    async def delete_consumer_if_unused(self, plan: ConsumerPlan) -> None:
        """A non-durable group's consumer goes when its last member leaves, as in STAN."""
        client = self._client
        if plan.durable or client is None or client.is_closed:
            return
        try:
            await _round_trip(client)
            info = await self._jsm.consumer_info(self.options.stream, plan.name)
            if not info.push_bound:
                await self._jsm.delete_consumer(self.options.stream, plan.name)
        except (nats.errors.Error, TimeoutError) as error:
            # Best effort: the server removes it after the inactive threshold anyway.
            logger.debug("consumer %s left to expire: %s", plan.name, error)

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed or self._closing:
            return
        self._closing = True
        try:
            for subscription in list(self._subscriptions):
                try:
                    await subscription.close()
                except TransportError as error:
                    logger.warning("closing %r: %s", subscription, error)
            self._subscriptions.clear()
        finally:
            await self._shutdown_client()
            self._closed = True

    async def _shutdown_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            self._closing = True
            # close() flushes what is buffered, so the last acks and naks reach the server.
            with contextlib.suppress(Exception):
                await client.close()

    def __repr__(self) -> str:
        return f"JetStreamTransport(url={self._url!r}, stream={self.options.stream!r})"


async def _round_trip(client: Client) -> None:
    """Return once the server has processed everything sent so far.

    nats-py writes a flush's PING straight to the socket, ahead of commands still
    buffered (a new SUB), so one flush may be answered before the server has seen them;
    the second PING follows them.
    """
    await client.flush()
    await client.flush()


def _existing_stream(info: api.StreamInfo) -> ExistingStream:
    config = info.config

    def value(item: Any, default: str) -> str:
        if item is None:
            return default
        return str(getattr(item, "value", item))

    return ExistingStream(
        name=str(config.name),
        subjects=tuple(config.subjects or ()),
        storage=value(config.storage, "file"),
        retention=value(config.retention, "limits"),
        replicas=int(config.num_replicas or 1),
        duplicate_window=float(config.duplicate_window or 0),
        sealed=bool(config.sealed),
        is_mirror=config.mirror is not None,
    )


def _same_consumer(current: api.ConsumerConfig, wanted: api.ConsumerConfig) -> bool:
    def close_enough(a: float | None, b: float | None) -> bool:
        return (a or 0.0) == (b or 0.0) or abs((a or 0.0) - (b or 0.0)) < 1e-6

    return (
        close_enough(current.ack_wait, wanted.ack_wait)
        and (current.max_deliver or -1) == (wanted.max_deliver or -1)
        and current.max_ack_pending == wanted.max_ack_pending
        and current.deliver_subject == wanted.deliver_subject
        and (current.deliver_group or None) == (wanted.deliver_group or None)
        and current.filter_subject == wanted.filter_subject
    )


async def connect(url: str, **options: Any) -> JetStreamTransport:
    """Connect to NATS at ``url`` (``nats://host:port``, or a comma-separated list for a
    cluster) and make sure the event stream exists and suits us.

    Options: see ``JetStreamOptions`` (user, password, token, creds_file, tls, stream,
    replicas, duplicate_window, publish_timeout...).
    """
    transport = JetStreamTransport(url, JetStreamOptions.from_kwargs(dict(options)))
    await transport._open()
    return transport
