"""A NATS Streaming client on nats-py: a state machine around the protocol messages.

One ``StanClient`` is one streaming session (a client id registered with the server)
over one NATS connection. States: connecting -> connected -> closed | lost. A session
is lost when the server says it no longer knows the client (a PING answered with an
error), when too many PINGs go unanswered, or when the NATS connection closes for good;
nats-py's own reconnect covers short outages while the server still knows the client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import inspect
import itertools
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg as NatsMsg
from nats.aio.subscription import Subscription as NatsSubscription

from common_events.errors import (
    ConnectError,
    ConnectionLost,
    PublishError,
    PublishTimeout,
    SubscribeError,
    TransportClosed,
    TransportError,
)
from common_events.transports.base import ConnectionLostCallback
from common_events.transports.stan import protocol
from common_events.transports.stan.protocol import StartPosition

logger = logging.getLogger("common_events.transports.stan")

_EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})

# A subject a streaming channel can have: dot-separated non-empty tokens of printable
# characters, no wildcards (STAN has none).
_VALID_SUBJECT = re.compile(r"[^.\s*>]+(\.[^.\s*>]+)*")

DeliveryHandler = Callable[["StanMessage"], Awaitable[None]]


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
    handler_grace: float = 5.0
    """Seconds a closing subscription waits for its running handler; after that the
    handler is cancelled and its message comes back after ack wait."""


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


class _Slots:
    """A FIFO counting semaphore whose release is O(1).

    ``asyncio.Semaphore`` scans its waiters on every release in Python 3.11, which
    turns thousands of publishes waiting for a free PubAck slot quadratic.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_acquire(self) -> bool:
        """Take a slot if one is free right now (no coroutine needed: the usual case)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over as we were cancelled: pass it on.
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self._free += 1


class _PendingPublish:
    """A publish sent and waiting for its PubAck."""

    __slots__ = ("future", "subject", "timeout", "timer")

    def __init__(
        self,
        future: asyncio.Future[str],
        subject: str,
        timeout: float,
        timer: asyncio.TimerHandle | None,
    ) -> None:
        self.future = future
        self.subject = subject
        self.timeout = timeout
        self.timer = timer


class StanMessage:
    """One delivery on a subscription; satisfies ``TransportMessage``."""

    __slots__ = ("_acked", "_proto", "_subscription")

    def __init__(self, proto: Any, subscription: StanSubscription) -> None:
        self._proto = proto
        self._subscription = subscription
        self._acked = False

    @property
    def subject(self) -> str:
        return str(self._proto.subject)

    @property
    def data(self) -> bytes:
        return bytes(self._proto.data)

    @property
    def sequence(self) -> int:
        return int(self._proto.sequence)

    @property
    def redelivered(self) -> bool:
        return bool(self._proto.redelivered)

    @property
    def redelivery_count(self) -> int:
        """Redeliveries so far as the server counts them (0 on the first delivery).

        The server keeps this count in memory only: after a restart it starts again."""
        count = int(self._proto.redeliveryCount)
        if self._proto.redelivered and count == 0:
            # Servers older than 0.16 flag redeliveries without counting them.
            return 1
        return count

    @property
    def delivery_count(self) -> int:
        return self.redelivery_count + 1

    @property
    def timestamp(self) -> datetime:
        ns = int(self._proto.timestamp)
        return datetime.fromtimestamp(ns / 1_000_000_000, tz=UTC)

    @property
    def timestamp_ns(self) -> int:
        return int(self._proto.timestamp)

    @property
    def headers(self) -> Mapping[str, str]:
        return _EMPTY_HEADERS

    @property
    def subscription(self) -> StanSubscription:
        return self._subscription

    async def ack(self) -> None:
        if self._acked:
            return
        self._acked = True
        subscription = self._subscription
        if subscription._finished:
            # The server no longer matches acks to this subscription; the message comes
            # back to whoever holds the (durable) subscription next.
            return
        try:
            await subscription._nc.publish(
                subscription.ack_inbox, subscription._ack_encoder.encode(self._proto.sequence)
            )
        except nats.errors.ConnectionClosedError as exc:
            raise ConnectionLost("the NATS connection is closed") from exc

    async def nak(self, delay: float | None = None) -> None:
        """NATS Streaming has no negative ack: the message comes back after ack wait."""

    def __repr__(self) -> str:
        return (
            f"<StanMessage subject={self.subject!r} sequence={self.sequence} "
            f"delivery_count={self.delivery_count}>"
        )


class StanSubscription:
    """A subscription of one ``StanClient``; satisfies ``TransportSubscription``."""

    def __init__(
        self,
        client: StanClient,
        *,
        subject: str,
        inbox: str,
        handler: DeliveryHandler,
        queue_group: str | None,
        durable_name: str | None,
        manual_acks: bool,
    ) -> None:
        self._client = client
        self._nc = client.nats
        self.subject = subject
        self.inbox = inbox
        self.queue_group = queue_group
        self.durable_name = durable_name
        self.manual_acks = manual_acks
        self.ack_inbox = ""
        self._ack_encoder = protocol.AckEncoder(subject)
        self._handler = handler
        self._nats_sub: NatsSubscription | None = None
        self._stopped = False
        self._finished = False
        # Set by whoever waits for the running handler to finish (close, loss); the
        # delivery path then only checks an attribute.
        self._idle_waiter: asyncio.Future[None] | None = None
        # Deliveries may arrive before the answer that carries the ack inbox.
        self._ready = asyncio.Event()
        self._is_ready = False
        # nats-py runs every delivery of a subscription in one task of its own.
        self._delivery_task: asyncio.Task[Any] | None = None
        self._in_handler = False

    @property
    def active(self) -> bool:
        return not self._stopped

    async def _on_delivery(self, raw: NatsMsg) -> None:
        # nats-py awaits this before handing over the subscription's next message, so
        # one subscription's handler never runs twice at once.
        if not self._is_ready:
            await self._ready.wait()
        if self._stopped:
            return
        try:
            proto = protocol.decode_msg(raw.data)
        except protocol.ProtocolError:
            logger.warning("dropping a delivery on %s that is not a MsgProto", self.subject)
            return
        message = StanMessage(proto, self)
        if self._delivery_task is None:
            self._delivery_task = asyncio.current_task()
        self._in_handler = True
        try:
            await self._handler(message)
        except Exception:
            # The message is not acknowledged and comes back after ack wait; the
            # subscription keeps going.
            logger.exception(
                "handler for %s failed on sequence %d", self.subject, message.sequence
            )
        else:
            if not self.manual_acks:
                await message.ack()
        finally:
            self._in_handler = False
            waiter = self._idle_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _stop(self) -> None:
        """Stop handing over deliveries; let a running handler finish first."""
        if self._stopped:
            return
        self._stopped = True
        # Wake deliveries still waiting for the ack inbox: they see the stop and go.
        self._ready.set()
        if self._in_handler and self._delivery_task is asyncio.current_task():
            # Called from our own handler: unsubscribing cancels nats-py's delivery
            # task, which is the task running this code, so do it once it is idle.
            self._client._spawn(self._unlisten())
        else:
            await self._unlisten()

    async def _unlisten(self) -> None:
        if self._in_handler:
            if self._idle_waiter is None or self._idle_waiter.done():
                self._idle_waiter = asyncio.get_running_loop().create_future()
            grace = self._client.options.handler_grace
            done, _ = await asyncio.wait({self._idle_waiter}, timeout=grace)
            if not done:
                logger.warning(
                    "handler for %s still running after %.1fs; cancelling it, its message "
                    "comes back after ack wait",
                    self.subject,
                    grace,
                )
        nats_sub, self._nats_sub = self._nats_sub, None
        if nats_sub is not None:
            # Fails harmlessly when the NATS connection is closed already.
            with contextlib.suppress(nats.errors.Error):
                await nats_sub.unsubscribe()

    def _set_ready(self, ack_inbox: str) -> None:
        self.ack_inbox = ack_inbox
        self._is_ready = True
        self._ready.set()

    async def _drop(self) -> None:
        """Forget the subscription without asking the streaming server (session lost,
        or the server refused it): let a running handler finish, stop listening."""
        self._finished = True
        await self._stop()

    async def close(self) -> None:
        """Stop receiving; a durable subscription survives and resumes later."""
        await self._finish(remove=False)

    async def unsubscribe(self) -> None:
        """Stop receiving and remove the subscription (and its durable state)."""
        await self._finish(remove=True)

    async def _finish(self, *, remove: bool) -> None:
        if self._finished:
            return
        await self._stop()
        self._finished = True
        await self._client._end_subscription(self, remove=remove)


class StanClient:
    """One NATS Streaming session. Build it with ``await StanClient.connect(...)``."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        cluster_id: str,
        client_id: str,
        options: ClientOptions,
        owns_connection: bool,
        on_connection_lost: ConnectionLostCallback | None,
    ) -> None:
        self._nc = nc
        self.cluster_id = cluster_id
        self.client_id = client_id
        self.options = options
        self._owns_connection = owns_connection
        self._lost_callbacks: list[ConnectionLostCallback] = (
            [on_connection_lost] if on_connection_lost is not None else []
        )
        self.state = State.CONNECTING
        self.conn_id = os.urandom(16).hex().encode()
        self._guid_prefix = os.urandom(8).hex()
        self._guid_counter = itertools.count(1)
        self._subjects: protocol.ConnectResponse | None = None
        self._ack_subject = f"{protocol.ACK_PREFIX}.{os.urandom(11).hex()}"
        self._pending: dict[str, _PendingPublish] = {}
        # Publishes with the default timeout expire in the order they were sent, so one
        # timer over a FIFO of deadlines serves them all (a timer per publish costs more
        # than the rest of the publish). Other timeouts get a timer of their own.
        self._deadlines: collections.deque[tuple[float, str]] = collections.deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._pub_slots = _Slots(options.max_pub_acks_inflight)
        # Per subject: the NATS subject to publish on and the PubMsg encoder.
        self._routes: dict[str, tuple[str, protocol.PubMsgEncoder]] = {}
        self._subscriptions: dict[str, StanSubscription] = {}
        self._internal_subs: list[NatsSubscription] = []
        self._ping_task: asyncio.Task[None] | None = None
        self._pings_out = 0
        self._ping_inbox = ""
        self._ping_payload = b""
        self._lost_error: ConnectionLost | None = None
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._close_lock = asyncio.Lock()

    # -- connecting ---------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        nc: NatsClient,
        *,
        cluster_id: str,
        client_id: str,
        options: ClientOptions | None = None,
        owns_connection: bool = False,
        on_connection_lost: ConnectionLostCallback | None = None,
    ) -> StanClient:
        """Register ``client_id`` with the streaming server of ``cluster_id``."""
        client = cls(
            nc,
            cluster_id=cluster_id,
            client_id=client_id,
            options=options or ClientOptions(),
            owns_connection=owns_connection,
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
        self._internal_subs = [
            await nc.subscribe(heartbeat_inbox, cb=self._on_heartbeat),
            await nc.subscribe(self._ping_inbox, cb=self._on_ping_response),
            # PubAcks may come in bursts of max_pub_acks_inflight; never drop one.
            await nc.subscribe(
                self._ack_subject,
                cb=self._on_pub_ack,
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
        except nats.errors.NoRespondersError:
            raise NoStreamingServerError(
                f"no NATS Streaming server with cluster id {self.cluster_id!r} answered on "
                f"{subject!r}: check the cluster id (nats-streaming-server -cid) and that "
                "the server is a streaming server"
            ) from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise NoStreamingServerError(
                f"no answer to the connect request for cluster id {self.cluster_id!r} "
                f"within {opts.connect_timeout}s: wrong cluster id, or the server is busy"
            ) from None
        except nats.errors.Error as exc:
            raise ConnectError(f"connect request failed: {exc}") from exc
        response = protocol.decode_connect_response(reply.data)
        if response.error:
            raise ConnectError(self._explain_refusal(response.error))
        self._subjects = response
        self.state = State.CONNECTED
        if response.protocol >= protocol.PROTOCOL_VERSION and response.ping_interval != 0:
            self._ping_payload = protocol.encode_ping(self.conn_id)
            self._ping_task = asyncio.create_task(
                self._ping_loop(), name=f"stan-ping-{self.client_id}"
            )
        logger.debug(
            "connected to cluster %r as %r (protocol %d)",
            self.cluster_id,
            self.client_id,
            response.protocol,
        )

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
        if self._owns_connection and not self._nc.is_closed:
            await self._nc.close()

    # -- properties ---------------------------------------------------------------------

    @property
    def nats(self) -> NatsClient:
        return self._nc

    @property
    def is_connected(self) -> bool:
        return self.state is State.CONNECTED

    @property
    def pub_acks_inflight(self) -> int:
        return len(self._pending)

    @property
    def subjects(self) -> protocol.ConnectResponse:
        if self._subjects is None:
            raise TransportClosed("not connected")
        return self._subjects

    def _check_usable(self) -> None:
        if self.state is State.CONNECTED:
            return
        if self._lost_error is not None:
            raise ConnectionLost(str(self._lost_error))
        raise TransportClosed(f"the NATS Streaming client {self.client_id!r} is closed")

    # -- protocol handlers --------------------------------------------------------------

    async def _on_heartbeat(self, msg: NatsMsg) -> None:
        # The server asks "are you there?" with an empty request; any reply will do.
        if msg.reply:
            with contextlib.suppress(nats.errors.Error):
                await self._nc.publish(msg.reply, b"")

    async def _on_ping_response(self, msg: NatsMsg) -> None:
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            # No responder: counts as a missed PING, like no answer at all.
            return
        try:
            error = protocol.decode_ping_response_error(msg.data)
        except protocol.ProtocolError:
            return
        if error:
            await self._lose(
                ConnectionLost(
                    f"the NATS Streaming server no longer knows client {self.client_id!r}: "
                    f"{error}"
                )
            )
            return
        self._pings_out = 0

    async def _ping_loop(self) -> None:
        subjects = self.subjects
        interval = self.options.ping_interval
        max_out = self.options.ping_max_out
        try:
            while self.state is State.CONNECTED:
                await asyncio.sleep(interval)
                self._pings_out += 1
                if self._pings_out > max_out:
                    await self._lose(
                        ConnectionLost(
                            f"the NATS Streaming server did not answer {max_out} PINGs "
                            f"in a row ({interval}s apart); connection lost"
                        )
                    )
                    return
                try:
                    await self._nc.publish(
                        subjects.ping_requests, self._ping_payload, reply=self._ping_inbox
                    )
                except nats.errors.ConnectionClosedError:
                    await self._lose(ConnectionLost("the NATS connection is closed"))
                    return
                except nats.errors.Error:
                    # Reconnecting and the buffer is full: a missed PING, counted above.
                    pass
        except asyncio.CancelledError:
            pass

    async def _on_pub_ack(self, msg: NatsMsg) -> None:
        try:
            guid, error = protocol.decode_pub_ack_fields(msg.data)
        except protocol.ProtocolError:
            logger.warning("dropping a malformed PubAck")
            return
        entry = self._pending.pop(guid, None)
        if entry is None:
            # Timed out already, or a duplicate answer.
            return
        if entry.timer is not None:
            entry.timer.cancel()
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in self._pending:
            deadlines.popleft()
        self._pub_slots.release()
        future = entry.future
        if future.done():
            return
        if error:
            future.set_exception(PublishError(f"the server refused the publish: {error}"))
        else:
            future.set_result(guid)

    def _expire(self, guid: str) -> None:
        entry = self._pending.pop(guid, None)
        if entry is None:
            return
        self._pub_slots.release()
        if not entry.future.done():
            entry.future.set_exception(
                PublishTimeout(
                    f"no PubAck for a publish to {entry.subject!r} within "
                    f"{entry.timeout}s (guid {guid})"
                )
            )

    def _expire_due(self) -> None:
        self._expiry = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadlines = self._deadlines
        while deadlines:
            deadline, guid = deadlines[0]
            if guid not in self._pending:
                deadlines.popleft()
            elif deadline <= now:
                deadlines.popleft()
                self._expire(guid)
            else:
                self._expiry = loop.call_at(deadline, self._expire_due)
                return

    # -- publishing ---------------------------------------------------------------------

    async def publish_async(
        self, subject: str, data: bytes, *, ack_timeout: float | None = None
    ) -> asyncio.Future[str]:
        """Send one message; the returned future resolves to its guid on PubAck.

        Waits first while ``max_pub_acks_inflight`` publishes are unacknowledged. The
        future fails with ``PublishTimeout`` after ``ack_timeout`` (default: the client's
        ``publish_timeout``), or ``PublishError`` if the server refuses the message.
        """
        self._check_usable()
        route = self._routes.get(subject)
        if route is None:
            route = self._route_for(subject)
        if not self._pub_slots.try_acquire():
            await self._pub_slots.acquire()
        if self.state is not State.CONNECTED:
            self._pub_slots.release()
            self._check_usable()
        loop = asyncio.get_running_loop()
        guid = f"{self._guid_prefix}{next(self._guid_counter):x}"
        future: asyncio.Future[str] = loop.create_future()
        default_timeout = self.options.publish_timeout
        if ack_timeout is None or ack_timeout == default_timeout:
            entry = _PendingPublish(future, subject, default_timeout, None)
            self._deadlines.append((loop.time() + default_timeout, guid))
            if self._expiry is None:
                self._expiry = loop.call_later(default_timeout, self._expire_due)
        else:
            timer = loop.call_later(ack_timeout, self._expire, guid)
            entry = _PendingPublish(future, subject, ack_timeout, timer)
        self._pending[guid] = entry
        nats_subject, encoder = route
        try:
            await self._nc.publish(
                nats_subject, encoder.encode(guid, data), reply=self._ack_subject
            )
        except nats.errors.Error as exc:
            if self._pending.pop(guid, None) is not None:
                if entry.timer is not None:
                    entry.timer.cancel()
                self._pub_slots.release()
            if isinstance(exc, nats.errors.ConnectionClosedError):
                raise ConnectionLost("the NATS connection is closed") from exc
            raise PublishError(f"could not send the publish to {subject!r}: {exc}") from exc
        return future

    def _route_for(self, subject: str) -> tuple[str, protocol.PubMsgEncoder]:
        # Checked once per subject: a service publishes on a handful of them, and a
        # NATS connection made by this package skips nats-py's per-message check.
        if not _VALID_SUBJECT.fullmatch(subject):
            raise PublishError(
                f"invalid subject {subject!r}: no spaces, no wildcards, no empty tokens"
            )
        route = (
            protocol.publish_subject(self.subjects.pub_prefix, subject),
            protocol.PubMsgEncoder(
                client_id=self.client_id, subject=subject, conn_id=self.conn_id
            ),
        )
        if len(self._routes) < 10_000:
            self._routes[subject] = route
        return route

    async def publish(
        self, subject: str, data: bytes, *, ack_timeout: float | None = None
    ) -> str:
        """Send one message and wait for its PubAck; return its guid."""
        future = await self.publish_async(subject, data, ack_timeout=ack_timeout)
        return await future

    # -- subscribing --------------------------------------------------------------------

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
        self._check_usable()
        subjects = self.subjects
        inbox = self._nc.new_inbox()
        sub = StanSubscription(
            self,
            subject=subject,
            inbox=inbox,
            handler=handler,
            queue_group=queue_group,
            durable_name=durable_name,
            manual_acks=manual_acks,
        )
        # Listen before asking: the server starts delivering as soon as it answers.
        # The server bounds deliveries by max in flight; never drop one client-side.
        sub._nats_sub = await self._nc.subscribe(
            inbox, cb=sub._on_delivery, pending_msgs_limit=0, pending_bytes_limit=0
        )
        request = protocol.encode_subscription_request(
            client_id=self.client_id,
            subject=subject,
            inbox=inbox,
            queue_group=queue_group,
            durable_name=durable_name,
            max_in_flight=max_in_flight,
            ack_wait_seconds=ack_wait_seconds,
            start_position=start_position,
            start_sequence=start_sequence,
            start_time_delta_ns=start_time_delta_ns,
        )
        try:
            reply = await self._nc.request(
                subjects.sub_requests, request, timeout=self.options.connect_timeout
            )
            response = protocol.decode_subscription_response(reply.data)
        except (nats.errors.Error, TimeoutError, protocol.ProtocolError) as exc:
            await sub._drop()
            if isinstance(exc, nats.errors.TimeoutError | TimeoutError):
                # The server may have made the subscription after all; close it
                # (best effort) so it does not linger. The server finds it by inbox.
                with contextlib.suppress(nats.errors.Error):
                    await self._nc.publish(
                        subjects.sub_close_requests,
                        protocol.encode_unsubscribe_request(
                            client_id=self.client_id,
                            subject=subject,
                            ack_inbox=inbox,
                            durable_name=durable_name,
                        ),
                    )
            raise SubscribeError(f"subscription to {subject!r} failed: {exc!r}") from exc
        if response.error:
            await sub._drop()
            raise SubscribeError(f"the server refused the subscription to {subject!r}: "
                                 f"{response.error}")
        sub._set_ready(response.ack_inbox)
        self._subscriptions[inbox] = sub
        if self.state is not State.CONNECTED:
            await sub._drop()
            self._check_usable()
        return sub

    async def _end_subscription(self, sub: StanSubscription, *, remove: bool) -> None:
        self._subscriptions.pop(sub.inbox, None)
        if self.state is not State.CONNECTED:
            # Closing the session closes the subscription on the server as well.
            return
        subjects = self.subjects
        target = subjects.unsub_requests if remove else subjects.sub_close_requests
        request = protocol.encode_unsubscribe_request(
            client_id=self.client_id,
            subject=sub.subject,
            ack_inbox=sub.ack_inbox,
            durable_name=sub.durable_name,
        )
        what = "unsubscribe" if remove else "subscription close"
        try:
            reply = await self._nc.request(target, request, timeout=self.options.connect_timeout)
            error = protocol.decode_subscription_response(reply.data).error
        except (nats.errors.Error, TimeoutError, protocol.ProtocolError) as exc:
            raise TransportError(f"{what} of {sub.subject!r} failed: {exc!r}") from exc
        if error:
            raise TransportError(f"the server refused the {what} of {sub.subject!r}: {error}")

    # -- ending -------------------------------------------------------------------------

    async def _unsubscribe_internal(self) -> None:
        subs, self._internal_subs = self._internal_subs, []
        if self._nc.is_closed:
            return
        for nats_sub in subs:
            with contextlib.suppress(nats.errors.Error):
                await nats_sub.unsubscribe()

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for entry in pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
            self._pub_slots.release()
            if not entry.future.done():
                entry.future.set_exception(error)

    def _stop_pinging(self) -> None:
        task, self._ping_task = self._ping_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        """Close subscriptions (durables survive), send CloseRequest, close NATS.

        The server forgets the client at once instead of waiting for missed heartbeats.
        Idempotent; a lost session closes without talking to the server.
        """
        async with self._close_lock:
            if self.state is not State.CONNECTED:
                if self._owns_connection and not self._nc.is_closed:
                    await self._nc.close()
                return
            # Finish running handlers and close each subscription on the server
            # before the session goes away.
            subs = list(self._subscriptions.values())
            results = await asyncio.gather(
                *(sub.close() for sub in subs), return_exceptions=True
            )
            for sub, result in zip(subs, results, strict=True):
                if isinstance(result, BaseException):
                    logger.warning("closing the subscription to %s: %s", sub.subject, result)
            self.state = State.CLOSED
            self._stop_pinging()
            self._fail_pending(TransportClosed("the client was closed before the PubAck came"))
            try:
                reply = await self._nc.request(
                    self.subjects.close_requests,
                    protocol.encode_close_request(self.client_id),
                    timeout=self.options.connect_timeout,
                )
                error = protocol.decode_close_response_error(reply.data)
            except (nats.errors.Error, TimeoutError, protocol.ProtocolError) as exc:
                error = repr(exc)
            if error:
                logger.warning(
                    "close request for client %r got no clean answer: %s; the server will "
                    "drop the client after missed heartbeats",
                    self.client_id,
                    error,
                )
            await self._unsubscribe_internal()
            if self._owns_connection and not self._nc.is_closed:
                await self._nc.close()
            logger.debug("closed client %r", self.client_id)

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        """Also call ``callback`` (it may be a coroutine function) if the session is lost."""
        self._lost_callbacks.append(callback)

    async def _lose(self, error: ConnectionLost) -> None:
        """The session is gone: stop everything locally and tell the owner."""
        if self.state is not State.CONNECTED:
            return
        self.state = State.LOST
        self._lost_error = error
        self._stop_pinging()
        subs = list(self._subscriptions.values())
        self._subscriptions.clear()
        self._fail_pending(error)
        logger.error("NATS Streaming client %r: %s", self.client_id, error)
        # In the background: this may run inside one of the subscriptions' own tasks.
        self._spawn(self._release(subs))
        for callback in self._lost_callbacks:
            try:
                result = callback(error)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                logger.exception("on_connection_lost callback failed")

    async def _release(self, subs: list[StanSubscription]) -> None:
        await asyncio.gather(*(sub._drop() for sub in subs))
        await self._unsubscribe_internal()
        if self._owns_connection and not self._nc.is_closed:
            await self._nc.close()

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                logger.exception("background task of client %r failed", self.client_id)

        task = asyncio.create_task(run())
        self._callback_tasks.add(task)
        task.add_done_callback(self._callback_tasks.discard)

    async def nats_closed(self) -> None:
        """Called when the NATS connection closed for good (nats-py ``closed_cb``)."""
        await self._lose(ConnectionLost("the NATS connection closed and will not reconnect"))
