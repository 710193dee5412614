"""A drop-in for ``asyncio-nats-streaming``'s ``stan.aio.client.Client``.

That package cannot run on the Pythons this one supports (it passes ``loop=`` to
asyncio and ships protobuf code that protobuf >= 4 refuses). Code written for it ports
by changing one import::

    from stan.aio.client import Client as STAN      # before
    from common_events.stan import Client as STAN   # after

The call signatures are those of ``stan.aio.client.Client`` 0.4: ``connect(cluster_id,
client_id, nats=nc, ...)``, ``publish(subject, payload, ack_handler=None, ack_wait=30)``,
``subscribe(subject, cb=..., queue=..., durable_name=..., start_at=...,
deliver_all_available=..., sequence=..., time=..., manual_acks=..., ack_wait=...,
max_inflight=...)``, ``ack(msg)``, ``close()``, and ``Subscription.unsubscribe()`` /
``close()``. ``loop=`` is accepted and ignored.

It is built on ``StanClient``'s public API only. With no core in front of it, it is
the one place that still waits for a running callback when a subscription or the client
closes: at most ``handler_grace`` seconds (a keyword of ``connect``, 5 by default), then
the callback is cancelled and its message comes back after ack wait.

One piece of ~400 lines on purpose: it mirrors one foreign module (``stan.aio.client``:
its errors, ``Msg``, ``Subscription`` and ``Client``) class for class.
"""

from __future__ import annotations

import asyncio
import logging
import time as _time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient

from common_events.errors import ConnectError, TransportError
from common_events.transports.nats_connection import NatsOptions, open_nats, parse_servers
from common_events.transports.stan import protocol_pb2
from common_events.transports.stan.protocol import StartPosition
from common_events.transports.stan.session import (
    DEFAULT_HANDLER_GRACE,
    ClientOptions,
    NoStreamingServerError,
    StanClient,
)
from common_events.transports.stan.subscription import StanMessage, StanSubscription

__all__ = [
    "Client",
    "ErrBadConnection",
    "ErrBadSubscription",
    "ErrConnectReqTimeout",
    "Msg",
    "StanError",
    "Subscription",
]

logger = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_ACK_WAIT = 30
DEFAULT_MAX_INFLIGHT = 1024
DEFAULT_CONNECT_TIMEOUT = 2
DEFAULT_MAX_PUB_ACKS_INFLIGHT = 16384
DEFAULT_PENDING_LIMIT = 8192
DEFAULT_PING_INTERVAL = 5
DEFAULT_PING_MAX_OUT = 3
NATS_SCHEMES = {"nats": "nats", "tls": "tls"}


class StanError(TransportError):
    """Base of the errors named as in ``stan.aio.errors``."""


class ErrConnectReqTimeout(StanError, ConnectError):
    """No streaming server answered the connect request (often: wrong cluster id)."""


class ErrBadSubscription(StanError):
    """The subscription is closed."""


class ErrBadConnection(StanError):
    """The client is not connected."""


PubAck = protocol_pb2.PubAck
MsgCallback = Callable[["Msg"], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]
AckHandler = Callable[[protocol_pb2.PubAck], Awaitable[None]]


class Msg:
    """A received message, with the attributes of ``stan.aio.client.Msg``."""

    __slots__ = ("_message", "sub")

    def __init__(self, message: StanMessage, sub: Subscription) -> None:
        self._message = message
        self.sub = sub

    @property
    def proto(self) -> protocol_pb2.MsgProto:
        return self._message.proto

    @property
    def data(self) -> bytes:
        return self._message.data

    @property
    def sequence(self) -> int:
        return self._message.sequence

    @property
    def seq(self) -> int:
        return self._message.sequence

    @property
    def timestamp(self) -> int:
        """Nanoseconds since the Unix epoch, as the server stamped it."""
        return self._message.timestamp_ns

    @property
    def redelivered(self) -> bool:
        return self._message.redelivered

    @property
    def redelivery_count(self) -> int:
        return self._message.redelivery_count

    async def ack(self) -> None:
        await self._message.ack()

    def __repr__(self) -> str:
        return f"<nats streaming msg sequence={self.sequence}, time={self.timestamp}>"


class Subscription:
    """A subscription made by ``Client.subscribe``."""

    def __init__(
        self,
        *,
        subject: str,
        queue: str | None,
        durable_name: str | None,
        manual_acks: bool,
        cb: MsgCallback | None,
        error_cb: ErrorCallback | None,
        handler_grace: float = DEFAULT_HANDLER_GRACE,
    ) -> None:
        self.subject = subject
        self.queue = queue
        self.durable_name = durable_name
        self.manual_acks = manual_acks
        self.cb = cb
        self.error_cb = error_cb
        self.handler_grace = handler_grace
        self._sub: StanSubscription | None = None
        self._closing = False
        # One callback at a time: nats-py hands a subscription's messages over in order.
        self._idle = asyncio.Event()
        self._idle.set()
        self._callback_task: asyncio.Task[object] | None = None

    @property
    def inbox(self) -> str:
        return self._sub.inbox if self._sub else ""

    @property
    def ack_inbox(self) -> str:
        return self._sub.ack_inbox if self._sub else ""

    async def _deliver(self, message: StanMessage) -> None:
        if self._closing:
            return  # not acked: it comes back to the next holder of the subscription
        self._callback_task = asyncio.current_task()
        self._idle.clear()
        try:
            await self._run_callback(message)
        finally:
            self._idle.set()

    async def _run_callback(self, message: StanMessage) -> None:
        msg = Msg(message, self)
        try:
            if self.cb is not None:
                await self.cb(msg)
        except Exception as exc:
            # As in stan.py: the error goes to error_cb, the message is not acked.
            if self.error_cb is None:
                logger.exception("subscription callback for %r failed", self.subject)
            else:
                try:
                    await self.error_cb(exc)
                except Exception:
                    logger.exception("error callback for %r failed", self.subject)
            return
        if not self.manual_acks:
            await message.ack()

    async def _wait_for_callback(self) -> None:
        """Take no more messages; give a running callback ``handler_grace`` seconds."""
        self._closing = True
        if self._idle.is_set() or self._callback_task is asyncio.current_task():
            return
        try:
            await asyncio.wait_for(self._idle.wait(), self.handler_grace)
        except TimeoutError:
            logger.warning(
                "callback for %r still running after %.1fs; cancelling it, its message "
                "comes back after ack wait",
                self.subject,
                self.handler_grace,
            )

    def _checked(self) -> StanSubscription:
        if self._sub is None:
            raise ErrBadSubscription("stan: invalid subscription")
        return self._sub

    async def unsubscribe(self) -> None:
        """Stop receiving and remove the subscription, durable state included."""
        sub = self._checked()
        await self._wait_for_callback()
        try:
            await sub.unsubscribe()
        except TransportError as exc:
            raise StanError(str(exc)) from exc

    async def close(self) -> None:
        """Stop receiving; a durable subscription keeps its position on the server."""
        sub = self._checked()
        await self._wait_for_callback()
        try:
            await sub.close()
        except TransportError as exc:
            raise StanError(str(exc)) from exc


class Client:
    """Asyncio client for NATS Streaming with the API of ``stan.aio.client.Client``."""

    def __init__(self) -> None:
        self._client: StanClient | None = None
        self._cluster_id = ""
        self._client_id = ""
        self._handler_grace = DEFAULT_HANDLER_GRACE
        self._subscriptions: list[Subscription] = []
        self._ack_handlers: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return "<nats streaming client (common_events.stan)>"

    @property
    def stan(self) -> StanClient:
        if self._client is None:
            raise ErrBadConnection("stan: invalid connection")
        return self._client

    async def connect(
        self,
        cluster_id: str,
        client_id: str,
        nats: NatsClient | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_pub_acks_inflight: int = DEFAULT_MAX_PUB_ACKS_INFLIGHT,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        ping_max_out: int = DEFAULT_PING_MAX_OUT,
        conn_lost_cb: Callable[[Exception], object] | None = None,
        loop: Any = None,
        *,
        servers: str | list[str] = DEFAULT_NATS_URL,
        handler_grace: float = DEFAULT_HANDLER_GRACE,
    ) -> None:
        """Start a session with ``cluster_id`` on the borrowed NATS connection ``nats``
        (or on a new one to ``servers``, which ``close()`` then closes).

        ``handler_grace``: seconds closing a subscription (or the client) waits for its
        running callback before cancelling it.
        """
        del loop  # asyncio has not taken a loop argument since Python 3.10
        self._cluster_id = cluster_id
        self._client_id = client_id
        self._handler_grace = handler_grace
        options = ClientOptions(
            connect_timeout=connect_timeout,
            max_pub_acks_inflight=max_pub_acks_inflight,
            ping_interval=ping_interval,
            ping_max_out=ping_max_out,
        )
        if nats is None:
            connection = await open_nats(
                parse_servers(
                    servers if isinstance(servers, str) else ",".join(servers),
                    schemes=NATS_SCHEMES,
                ),
                NatsOptions(name=client_id, connect_timeout=connect_timeout),
                direct_deliveries=True,
            )
        try:
            self._client = await StanClient.connect(
                nats if nats is not None else connection,
                cluster_id=cluster_id,
                client_id=client_id,
                options=options,
                on_connection_lost=conn_lost_cb,
            )
        except NoStreamingServerError as exc:
            raise ErrConnectReqTimeout(
                f"stan: failed connecting to {cluster_id!r}: {exc}"
            ) from exc
        except ConnectError as exc:
            raise StanError(str(exc)) from exc

    async def publish(
        self,
        subject: str,
        payload: bytes,
        ack_handler: AckHandler | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
    ) -> protocol_pb2.PubAck | None:
        """Publish and wait for the PubAck (returned), or with ``ack_handler`` return
        once sent and await ``ack_handler(pub_ack)`` when the PubAck (or a timeout,
        as ``pub_ack.error``) comes."""
        future = await self.stan.publish_async(subject, payload, ack_timeout=ack_wait)
        if ack_handler is None:
            guid = await future
            return PubAck(guid=guid)

        def done(fut: asyncio.Future[str]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            ack = PubAck(guid=fut.result()) if exc is None else PubAck(error=str(exc))
            task = asyncio.ensure_future(self._run_ack_handler(ack_handler, ack))
            self._ack_handlers.add(task)
            task.add_done_callback(self._ack_handlers.discard)

        future.add_done_callback(done)
        return None

    @staticmethod
    async def _run_ack_handler(ack_handler: AckHandler, ack: protocol_pb2.PubAck) -> None:
        try:
            await ack_handler(ack)
        except Exception:
            logger.exception("ack handler failed")

    async def subscribe(
        self,
        subject: str,
        cb: MsgCallback | None = None,
        error_cb: ErrorCallback | None = None,
        start_at: str | None = None,
        deliver_all_available: bool = False,
        sequence: int | None = None,
        time: float | None = None,
        manual_acks: bool = False,
        queue: str | None = None,
        ack_wait: int = DEFAULT_ACK_WAIT,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        durable_name: str | None = None,
        pending_limits: int = DEFAULT_PENDING_LIMIT,
    ) -> Subscription:
        """Subscribe; ``start_at`` is ``new_only`` (default), ``first``, ``sequence``
        (with ``sequence=``), ``last_received`` or ``time`` (with ``time=``, a Unix
        timestamp)."""
        del pending_limits  # the server's max in flight bounds what is pending
        start_sequence = 0
        start_time_delta = 0
        if deliver_all_available or start_at == "first":
            position = StartPosition.FIRST
        elif start_at is None or start_at == "new_only":
            position = StartPosition.NEW_ONLY
        elif start_at == "last_received":
            position = StartPosition.LAST_RECEIVED
        elif start_at == "sequence":
            if sequence is None:
                raise ValueError("start_at='sequence' needs sequence=")
            position = StartPosition.SEQUENCE_START
            start_sequence = sequence
        elif start_at == "time":
            if time is None:
                raise ValueError("start_at='time' needs time= (a Unix timestamp)")
            position = StartPosition.TIME_DELTA_START
            start_time_delta = max(0, int((_time.time() - time) * 1_000_000_000))
        else:
            raise ValueError(f"unknown start_at {start_at!r}")
        sub = Subscription(
            subject=subject,
            queue=queue,
            durable_name=durable_name,
            manual_acks=manual_acks,
            cb=cb,
            error_cb=error_cb,
            handler_grace=self._handler_grace,
        )
        try:
            sub._sub = await self.stan.subscribe(
                subject,
                sub._deliver,
                queue_group=queue,
                durable_name=durable_name,
                start_position=position,
                start_sequence=start_sequence,
                start_time_delta_ns=start_time_delta,
                max_in_flight=max_inflight,
                ack_wait_seconds=max(1, int(ack_wait)),
                manual_acks=True,  # Subscription._deliver acks unless manual_acks
            )
        except TransportError as exc:
            raise StanError(str(exc)) from exc
        self._subscriptions = [s for s in self._subscriptions if not s._closing]
        self._subscriptions.append(sub)
        return sub

    async def ack(self, msg: Msg) -> None:
        """Acknowledge a message of a ``manual_acks=True`` subscription."""
        await msg.ack()

    async def close(self) -> None:
        """Give running callbacks ``handler_grace`` seconds, then end the session
        (CloseRequest). A borrowed NATS connection stays open."""
        subs, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(sub._wait_for_callback() for sub in subs))
        if self._client is not None:
            await self._client.close()
