"""A NATS Streaming session on nats-py: a state machine around the protocol messages.

One ``StanClient`` is one streaming session (a client id registered with the server)
over one NATS connection. States: connecting -> connected -> closed | lost. A session
is lost when the server says it no longer knows the client (a PING answered with an
error), when too many PINGs go unanswered, or when the NATS connection closes for good;
nats-py's own reconnect covers short outages while the server still knows the client.

The session does the handshake, the PINGs and the close; its PubAck pipeline
(``publishing``), the recovery of publishes caught by an outage (``recovery``) and its
subscriptions (``subscription``) do the rest and reach the session only through their
owner protocols.

Why this module is one piece of over 400 lines: connecting, liveness, losing and closing
are the transitions of one state machine over the same state (the state, the internal
inboxes, the pipeline, the subscriptions, the lost fan-out). Split apart, each part
would need the others' insides again, which is what the owner protocols removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import warnings
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common_events.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    TransportClosed,
    TransportError,
)
from common_events.transports.base import ConnectionLostCallback, PublishConfirmation
from common_events.transports.nats_connection import (
    ConnectionLostFanout,
    NatsConnection,
    Operation,
    classify_nats_error,
    map_nats_errors,
)
from common_events.transports.stan import protocol
from common_events.transports.stan.protocol import StartPosition
from common_events.transports.stan.publishing import PubAckPipeline
from common_events.transports.stan.recovery import PublishRecovery
from common_events.transports.stan.subscription import DeliveryHandler, StanSubscription

logger = logging.getLogger(__name__)

DEFAULT_HANDLER_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Session settings; the defaults are those of the reference services' Node client
    (node-nats-streaming) where it has one."""

    connect_timeout: float = 2.0
    """Seconds to wait for each answer of the server to a protocol request."""
    publish_timeout: float = 30.0
    """Seconds a publish waits for its PubAck."""
    max_pub_acks_inflight: int = 16384
    """Publishes sent but not yet acknowledged; more wait for a free slot."""
    ping_interval: float = 5.0
    """Seconds between PINGs to the server (at least 1 is announced to the server)."""
    ping_max_out: int = 3
    """PINGs without answer after which the session counts as lost."""
    handler_grace: float = field(default=DEFAULT_HANDLER_GRACE, compare=False)
    """Deprecated and ignored: closing a subscription no longer waits for its running
    handler (the core's ``Listener`` drains first)."""

    def __post_init__(self) -> None:
        if self.handler_grace != DEFAULT_HANDLER_GRACE:
            warnings.warn(
                "ClientOptions.handler_grace is deprecated and ignored: closing a "
                "subscription no longer waits for its running handler; the Listener "
                "drains first (drain_timeout)",
                DeprecationWarning,
                stacklevel=3,
            )


class NoStreamingServerError(ConnectError):
    """Nothing answered the connect request: wrong cluster id, or no streaming server."""


class State(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"
    LOST = "lost"


def new_client_id() -> str:
    """A client id the server accepts (letters, digits, ``-`` and ``_``) and that no
    other process will pick."""
    return f"common-events-{os.urandom(8).hex()}"


class StanClient:
    """One NATS Streaming session. Build it with ``await StanClient.connect(...)``."""

    def __init__(
        self,
        connection: NatsConnection,
        *,
        cluster_id: str,
        client_id: str,
        options: ClientOptions,
        on_connection_lost: ConnectionLostCallback | None = None,
    ) -> None:
        self._connection = connection
        self._nc = connection.client
        self.cluster_id = cluster_id
        self.client_id = client_id
        self.options = options
        self._lost = ConnectionLostFanout()
        if on_connection_lost is not None:
            self._lost.add(on_connection_lost)
        self.state = State.CONNECTING
        self.conn_id = os.urandom(16).hex().encode()
        self._server: protocol.ConnectResponse | None = None
        self._publishing = PubAckPipeline(
            self,
            max_inflight=options.max_pub_acks_inflight,
            publish_timeout=options.publish_timeout,
        )
        self._subscriptions: dict[str, StanSubscription] = {}
        # The heartbeat inbox, the PING answers and the PubAcks.
        self._internal_subs: list[Subscription] = []
        self._ping_task: asyncio.Task[None] | None = None
        self._recovery: PublishRecovery | None = None
        self._pings_out = 0
        self._ping_inbox = ""
        self._ping_payload = b""
        self._tasks: set[asyncio.Task[None]] = set()
        self._close_lock = asyncio.Lock()
        connection.add_connection_lost_callback(self._on_connection_lost)

    # -- connecting ----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        nats_connection: NatsConnection | Client,
        *,
        cluster_id: str,
        client_id: str,
        options: ClientOptions | None = None,
        owns_connection: bool = False,
        on_connection_lost: ConnectionLostCallback | None = None,
    ) -> StanClient:
        """Register ``client_id`` with the streaming server of ``cluster_id``.

        A nats-py ``Client`` is left open by ``close()`` unless ``owns_connection``; a
        ``NatsConnection`` knows itself whether it is ours to close.
        """
        if isinstance(nats_connection, NatsConnection):
            connection = nats_connection
        else:
            connection = NatsConnection.adopt(nats_connection, name=client_id)
            connection.owned = owns_connection
        client = cls(
            connection,
            cluster_id=cluster_id,
            client_id=client_id,
            options=options or ClientOptions(),
            on_connection_lost=on_connection_lost,
        )
        try:
            await client._handshake()
        except BaseException:
            await client._abandon()
            raise
        return client

    async def _handshake(self) -> None:
        nc = self._nc
        opts = self.options
        heartbeat_inbox = nc.new_inbox()
        self._ping_inbox = nc.new_inbox()
        with map_nats_errors(Operation.CONNECT, "NATS Streaming connect"):
            self._internal_subs = [
                await nc.subscribe(heartbeat_inbox, cb=self._on_heartbeat),
                await nc.subscribe(self._ping_inbox, cb=self._on_ping_response),
                # PubAcks may come in bursts of max_pub_acks_inflight; never drop one.
                await nc.subscribe(
                    self._publishing.ack_subject,
                    cb=self._publishing.on_pub_ack,
                    pending_msgs_limit=0,
                    pending_bytes_limit=0,
                ),
            ]
        request = protocol.encode_connect_request(
            client_id=self.client_id,
            heartbeat_inbox=heartbeat_inbox,
            conn_id=self.conn_id,
            ping_interval=max(1, round(opts.ping_interval)),
            ping_max_out=opts.ping_max_out,
        )
        subject = protocol.discover_subject(self.cluster_id)
        try:
            reply = await nc.request(subject, request, timeout=opts.connect_timeout)
            response = protocol.decode_connect_response(reply.data)
        except Exception as error:
            raise self._handshake_failure(error, subject) from None
        if response.error:
            raise ConnectError(self._explain_refusal(response.error))
        self._server = response
        self.state = State.CONNECTED
        if response.protocol_version >= protocol.PROTOCOL_VERSION and response.ping_interval:
            self._ping_payload = protocol.encode_ping(self.conn_id)
            self._ping_task = asyncio.create_task(
                self._ping_loop(), name=f"stan-ping-{self.client_id}"
            )
        self._recovery = PublishRecovery(
            self, self._publishing, can_probe=bool(self._ping_payload)
        )
        self._recovery.start()
        logger.debug(
            "connected to cluster %r as %r (protocol %d)",
            self.cluster_id,
            self.client_id,
            response.protocol_version,
        )

    def _handshake_failure(self, error: Exception, subject: str) -> Exception:
        if isinstance(error, protocol.ProtocolError):
            return ConnectError(f"the answer to the connect request on {subject!r}: {error}")
        failure = classify_nats_error(error, Operation.CONNECT, f"connect request on {subject!r}")
        if failure is None:
            return error
        if failure.transient:
            # No responder, or no answer in time: nothing listens on the discover
            # subject of this cluster id, or the server is too busy to answer.
            return NoStreamingServerError(
                f"no NATS Streaming server with cluster id {self.cluster_id!r} answered "
                f"on {subject!r} within {self.options.connect_timeout}s ({failure.reason}): "
                "check the cluster id (nats-streaming-server -cid), that the server is a "
                "streaming server, and that it is not overloaded"
            )
        return failure.error

    def _explain_refusal(self, error: str) -> str:
        if "already registered" in error:
            return (
                f"the server refused client id {self.client_id!r}: another connected "
                f"client already uses it ({error}). Pick another client id, or close "
                "the other client first"
            )
        if "invalid clientID" in error:
            return f"the server refused client id {self.client_id!r}: {error}"
        return f"the server refused the connection of client id {self.client_id!r}: {error}"

    async def _abandon(self) -> None:
        """Undo a handshake that failed: the server does not know us, send nothing."""
        self.state = State.CLOSED
        await self._unsubscribe_internal()
        await self._connection.close()

    # -- what the parts and the transport read -------------------------------------------

    @property
    def nats(self) -> Client:
        return self._nc

    @property
    def connection(self) -> NatsConnection:
        """The NATS connection this session runs on."""
        return self._connection

    @property
    def is_connected(self) -> bool:
        return self.state is State.CONNECTED

    @property
    def pub_acks_inflight(self) -> int:
        return self._publishing.inflight

    @property
    def subjects(self) -> protocol.SessionSubjects:
        """The subjects the server gave this session for its requests."""
        if self._server is None:
            raise TransportClosed("not connected")
        return self._server.subjects

    @property
    def request_timeout(self) -> float:
        return self.options.connect_timeout

    def check_usable(self) -> None:
        """Raise the error that says why the session cannot be used, if it cannot."""
        if self.state is State.CONNECTED:
            return
        lost = self._lost.error
        if lost is not None:
            if self._connection.credentials_refused:
                raise AuthenticationError(str(lost))
            raise ConnectionLost(str(lost))
        raise TransportClosed(f"the NATS Streaming client {self.client_id!r} is closed")

    def forget(self, subscription: StanSubscription) -> None:
        self._subscriptions.pop(subscription.inbox, None)

    def spawn(self, awaitable: Awaitable[object]) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                logger.exception("background task of client %r failed", self.client_id)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- liveness ------------------------------------------------------------------------

    async def _on_heartbeat(self, msg: Msg) -> None:
        # The server asks "are you there?" with an empty request; any reply will do.
        if msg.reply:
            with contextlib.suppress(TransportError), map_nats_errors(
                Operation.REQUEST, "heartbeat reply"
            ):
                await self._nc.publish(msg.reply, b"")

    async def _on_ping_response(self, msg: Msg) -> None:
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            # No responder: counts as a missed PING, like no answer at all.
            return
        try:
            error = protocol.decode_ping_response_error(msg.data)
        except protocol.ProtocolError:
            return
        if error:
            self._lose(self._forgotten(error))
            return
        self._pings_out = 0

    def _forgotten(self, error: str) -> ConnectionLost:
        return ConnectionLost(
            f"the NATS Streaming server no longer knows client {self.client_id!r}: {error}"
        )

    async def probe(self) -> bool:
        """PING the server now and wait for the answer (the recovery asks after an
        outage): whether it answered. A server that no longer knows this client loses
        the session at once."""
        if self.state is not State.CONNECTED or not self._ping_payload:
            return False
        try:
            reply = await self._nc.request(
                self.subjects.ping_requests,
                self._ping_payload,
                timeout=self.options.connect_timeout,
            )
            error = protocol.decode_ping_response_error(reply.data)
        except protocol.ProtocolError:
            return False
        except Exception as exc:
            failure = classify_nats_error(exc, Operation.REQUEST, "PING")
            if failure is None:
                raise
            if isinstance(failure.error, ConnectionLost):
                self._lose(ConnectionLost("the NATS connection is closed"))
            # No responder (no server, or a cluster without leader) or no reply in time.
            return False
        if error:
            self._lose(self._forgotten(error))
            return False
        self._pings_out = 0
        return True

    async def _ping_loop(self) -> None:
        ping_requests = self.subjects.ping_requests
        interval = self.options.ping_interval
        max_out = self.options.ping_max_out
        try:
            while self.state is State.CONNECTED:
                await asyncio.sleep(interval)
                self._pings_out += 1
                if self._pings_out > max_out:
                    self._lose(
                        ConnectionLost(
                            f"the NATS Streaming server did not answer {max_out} PINGs "
                            f"in a row ({interval}s apart); connection lost"
                        )
                    )
                    return
                try:
                    await self._nc.publish(
                        ping_requests, self._ping_payload, reply=self._ping_inbox
                    )
                except Exception as error:
                    failure = classify_nats_error(error, Operation.REQUEST, "PING")
                    if failure is None:
                        raise
                    if isinstance(failure.error, ConnectionLost):
                        self._lose(ConnectionLost("the NATS connection is closed"))
                        return
                    # Reconnecting and the buffer is full: a missed PING, counted above.
        except asyncio.CancelledError:
            pass

    def _stop_pinging(self) -> None:
        task, self._ping_task = self._ping_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self._recovery is not None:
            self._recovery.stop()

    # -- publishing ----------------------------------------------------------------------

    async def publish_async(
        self, subject: str, data: bytes, *, ack_timeout: float | None = None
    ) -> asyncio.Future[str]:
        """Send one message; the returned future resolves to its guid on PubAck.

        While ``max_pub_acks_inflight`` publishes are unacknowledged it waits, in line
        with every other publish, until a PubAck frees a slot and sends it. The
        future fails with ``PublishTimeout`` after ``ack_timeout`` (default: the client's
        ``publish_timeout``), or ``PublishError`` if the server refuses the message.
        """
        return await self._publishing.publish_async(subject, data, ack_timeout=ack_timeout)

    async def publish_batch(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[asyncio.Future[str] | Exception]:
        """Send each payload as soon as ``max_pub_acks_inflight`` leaves room, waiting
        for half the window when it is full; return, in order, each one's PubAck future
        or the error that kept it from being sent."""
        return await self._publishing.publish_batch(subject, payloads)

    @property
    def publish_room(self) -> int:
        """Publishes that may be sent now without waiting for a PubAck slot."""
        return self._publishing.room

    async def wait_for_publish_room(self) -> None:
        """While ``max_pub_acks_inflight`` publishes are unacknowledged (or publishes
        queue), wait until half of them are and none queues: a batch then sends that
        many without waiting once per PubAck."""
        await self._publishing.wait_for_room()

    async def publish(
        self, subject: str, data: bytes, *, ack_timeout: float | None = None
    ) -> str:
        """Send one message and wait for its PubAck; return its guid.

        While ``max_pub_acks_inflight`` publishes are unacknowledged, the message queues
        (in order) and a PubAck that frees a slot sends it: the caller wakes once, for
        its own PubAck."""
        return await (
            await self._publishing.publish_async(
                subject, data, ack_timeout=ack_timeout, hold_back=False
            )
        )

    def publish_now(self, subject: str, data: bytes) -> PublishConfirmation:
        """Send one message, or queue it while ``max_pub_acks_inflight`` publishes are
        unacknowledged (a PubAck that frees a slot sends it); return its confirmation,
        which resolves to its ``PublishAck`` on PubAck.

        Never waits, so nothing holds back a caller that does not await the
        confirmation: await it (as ``Publisher.publish``'s callers do). Raises, before
        sending, what says the client cannot publish."""
        return self._publishing.publish_now(subject, data)

    # -- subscribing ---------------------------------------------------------------------

    async def subscribe(
        self,
        subject: str,
        handler: DeliveryHandler,
        *,
        queue_group: str | None = None,
        durable_name: str | None = None,
        start_position: StartPosition = StartPosition.NEW_ONLY,
        start_sequence: int = 0,
        start_time_delta_ns: int = 0,
        max_in_flight: int = 1024,
        ack_wait_seconds: int = 30,
        manual_acks: bool = True,
    ) -> StanSubscription:
        self.check_usable()
        subscription = StanSubscription(
            self,
            subject=subject,
            handler=handler,
            queue_group=queue_group,
            durable_name=durable_name,
            manual_acks=manual_acks,
        )
        await subscription.start(
            start_position=start_position,
            start_sequence=start_sequence,
            start_time_delta_ns=start_time_delta_ns,
            max_in_flight=max_in_flight,
            ack_wait_seconds=ack_wait_seconds,
        )
        self._subscriptions[subscription.inbox] = subscription
        if not self.is_connected:
            await subscription.drop()
            self.check_usable()
        return subscription

    # -- ending --------------------------------------------------------------------------

    async def _unsubscribe_internal(self) -> None:
        subs, self._internal_subs = self._internal_subs, []
        if self._nc.is_closed:
            return
        for nats_sub in subs:
            with contextlib.suppress(TransportError), map_nats_errors(
                Operation.CLOSE, "NATS Streaming session inboxes"
            ):
                await nats_sub.unsubscribe()

    async def close(self) -> None:
        """Close subscriptions (durables survive), send CloseRequest, close NATS.

        Running handlers are not waited for (the core's ``Listener`` drains before it
        closes). The server forgets the client at once instead of waiting for missed
        heartbeats. Idempotent; a lost session closes without talking to the server.
        """
        async with self._close_lock:
            if self.state is not State.CONNECTED:
                await self._connection.close()
                return
            subs = list(self._subscriptions.values())
            results = await asyncio.gather(
                *(sub.close() for sub in subs), return_exceptions=True
            )
            for sub, result in zip(subs, results, strict=True):
                if isinstance(result, BaseException):
                    logger.warning("closing the subscription to %s: %s", sub.subject, result)
            self.state = State.CLOSED
            self._stop_pinging()
            self._publishing.fail_all(
                TransportClosed("the client was closed before the PubAck came")
            )
            try:
                with map_nats_errors(Operation.CLOSE, "close request"):
                    reply = await self._nc.request(
                        self.subjects.close_requests,
                        protocol.encode_close_request(self.client_id),
                        timeout=self.options.connect_timeout,
                    )
                error = protocol.decode_close_response_error(reply.data)
            except (TransportError, protocol.ProtocolError) as exc:
                error = str(exc)
            if error:
                logger.warning(
                    "close request for client %r got no clean answer: %s; the server will "
                    "drop the client after missed heartbeats",
                    self.client_id,
                    error,
                )
            await self._unsubscribe_internal()
            await self._connection.close()
            logger.debug("closed client %r", self.client_id)

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        """Also call ``callback`` (it may be a coroutine function) if the session is lost."""
        self._lost.add(callback)

    async def nats_closed(self) -> None:
        """Deprecated: the session learns by itself that its NATS connection closed (from
        the connection layer when it opened the connection, from a failing PING when
        the connection is the caller's)."""
        warnings.warn(
            "StanClient.nats_closed() is deprecated: the session notices a closed NATS "
            "connection by itself",
            DeprecationWarning,
            stacklevel=2,
        )
        self._lose(ConnectionLost("the NATS connection closed and will not reconnect"))

    def _on_connection_lost(self, error: ConnectionLost) -> None:
        # The NATS connection logged it already.
        self._lose(error, logged=True)

    def _lose(self, error: ConnectionLost, *, logged: bool = False) -> None:
        """The session is gone: stop everything locally and tell the owner."""
        if self.state is not State.CONNECTED:
            return
        self.state = State.LOST
        self._stop_pinging()
        subs = list(self._subscriptions.values())
        self._subscriptions.clear()
        self._publishing.fail_all(error)
        if not logged:
            logger.error("NATS Streaming client %r: %s", self.client_id, error)
        # In the background: this may run inside one of the subscriptions' own tasks.
        self.spawn(self._release(subs))
        self._lost.fire(error)

    async def _release(self, subs: list[StanSubscription]) -> None:
        # Running handlers may finish (the core drains them before it closes the
        # transport); the connection goes once they have.
        for sub in subs:
            await sub.drop()
        await asyncio.gather(*(sub.wait_idle() for sub in subs))
        await self._unsubscribe_internal()
        await self._connection.close()

    def __repr__(self) -> str:
        return (
            f"<StanClient cluster_id={self.cluster_id!r} client_id={self.client_id!r} "
            f"{self.state.value}>"
        )
