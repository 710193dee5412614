"""A subscription on a push consumer, and the messages it hands to the handler.

nats-py runs the handler from one task per subscription, one message at a time. Closing
stops the deliveries and hands back to the consumer what arrives meanwhile; it does not
wait for a running handler (the core's ``Listener`` has drained before it closes): a
handler still running then is abandoned, and its message comes back after ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common_events.errors import PermissionDenied, SubscribeError
from common_events.transports.base import MessageHandler
from common_events.transports.jetstream.consumers import ConsumerPlan
from common_events.transports.jetstream.parking import ParkingLot
from common_events.transports.jetstream.permissions import PermissionWatch
from common_events.transports.nats_connection import Operation, classify_nats_error

logger = logging.getLogger(__name__)

_EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})


class ConsumerRemoval(Protocol):
    """What a subscription asks of the administration when it goes."""

    async def delete_consumer(self, name: str) -> None: ...

    async def delete_consumer_if_unused(self, plan: ConsumerPlan) -> None: ...


async def round_trip(client: Client) -> None:
    """Return once the server has processed everything sent so far.

    nats-py writes a flush's PING straight to the socket, ahead of commands still
    buffered (a new SUB), so one flush may be answered before the server has seen them;
    the second PING follows them.
    """
    await client.flush()
    await client.flush()


def _ours(error: Exception, operation: Operation, what: str) -> BaseException:
    failure = classify_nats_error(error, operation, what)
    return error if failure is None else failure.error


def ack_prefix(reply: str) -> str:
    """The part of a delivery's ack subject before the delivery count.

    ``$JS.ACK.<stream>.<consumer>.`` or, with a domain and an account hash, two tokens
    more after ACK; the same for every delivery of one consumer on one server.
    """
    tokens = reply.split(".")
    count = len(tokens)
    if count == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return ".".join(tokens[:4]) + "."
    if count >= 11 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return ".".join(tokens[:6]) + "."
    raise ValueError(f"not a JetStream delivery (reply subject {reply!r})")


class JetStreamMessage:
    """One delivery from a push consumer.

    What the listener reads of every delivery, the delivery count, is cut out of the ack
    subject after a prefix that is the same for every delivery of the subscription
    (``ack_prefix``); the stream sequence and the timestamp are read from it only when
    asked for, and the headers wrapped only when read. Acknowledging writes the ack
    straight to the connection: one await, as plain nats-py code does.
    """

    __slots__ = (
        "_client",
        "_msg",
        "_parking",
        "_reply",
        "_sequence",
        "_settled",
        "_tail",
        "data",
        "delivery_count",
        "subject",
    )

    def __init__(self, msg: Msg, client: Client, parking: ParkingLot, prefix: str) -> None:
        """``prefix``: ``ack_prefix`` of this delivery's ack subject."""
        reply = msg.reply
        # <prefix><delivered>.<stream seq>.<consumer seq>.<ns>.<pending>[.<token>]
        start = len(prefix)
        if reply.startswith("1.", start):  # a first delivery: the common case
            self.delivery_count = 1
            self._tail = start + 2
        else:
            end = reply.index(".", start)
            self.delivery_count = int(reply[start:end])
            self._tail = end + 1
        self._sequence = 0
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self._msg = msg
        self._reply = reply
        self._client = client
        self._parking = parking
        self._settled = False

    @property
    def sequence(self) -> int:
        if not self._sequence:
            reply = self._reply
            self._sequence = int(reply[self._tail : reply.index(".", self._tail)])
        return self._sequence

    @property
    def redelivered(self) -> bool:
        return self.delivery_count > 1

    @property
    def timestamp(self) -> datetime:
        stamp = self._reply[self._tail :].split(".")[2]
        return datetime.fromtimestamp(int(stamp) / 1_000_000_000, UTC)

    @property
    def headers(self) -> Mapping[str, str]:
        headers = self._msg.headers
        return MappingProxyType(headers) if headers else _EMPTY_HEADERS

    @property
    def settled(self) -> bool:
        return self._settled

    async def ack(self) -> None:
        if self._settled:
            return
        self._settled = True
        try:
            await self._client.publish(self._reply)  # an empty payload is an ack
        except Exception as error:
            ours = _ours(error, Operation.ACK, f"acknowledging {self!r}")
            if ours is error:
                raise
            raise ours from error
        # Only a redelivery can have been parked; a first delivery costs one comparison.
        if self.delivery_count > 1 and self._parking.watching:
            self._parking.settled(self.sequence)

    async def park(self, delay: float) -> None:
        """Hand back for ``delay`` seconds without holding a slot of the consumer's
        window meanwhile: the window grows by one while the message is parked
        (``parking.py``). For a message that cannot be settled now and must not be lost."""
        if self._settled:
            return
        self._parking.park(self.sequence, delay)
        await self.nak(delay)

    async def nak(self, delay: float | None = None) -> None:
        if self._settled:
            return
        self._settled = True
        await self._settle(
            self._msg.nak(delay=delay if delay and delay > 0 else None), "handing back"
        )

    async def in_progress(self) -> bool:
        """JetStream's in-progress ack: the consumer's ack wait starts again."""
        if self._settled:
            return True
        await self._settle(self._msg.in_progress(), "reporting progress on")
        return True

    async def _settle(self, call: Awaitable[None], what: str) -> None:
        try:
            await call
        except Exception as error:
            ours = _ours(error, Operation.ACK, f"{what} {self!r}")
            if ours is error:
                raise
            raise ours from error

    def __repr__(self) -> str:
        return (
            f"JetStreamMessage(subject={self.subject!r}, sequence={self.sequence}, "
            f"delivery_count={self.delivery_count})"
        )


class JetStreamSubscription:
    """A push-consumer subscription; ``close()`` keeps a durable, ``unsubscribe()`` not."""

    def __init__(
        self,
        client: Client,
        consumers: ConsumerRemoval,
        subject: str,
        handler: MessageHandler,
        plan: ConsumerPlan,
        parking: ParkingLot,
        *,
        stop_timeout: float,
        on_closed: Callable[[JetStreamSubscription], None],
    ) -> None:
        self._client = client
        self._consumers = consumers
        self._subject = subject
        self._handler = handler
        self.plan = plan
        self._parking = parking
        self._stop_timeout = stop_timeout
        self._on_closed = on_closed
        self._nats_subscription: Subscription | None = None
        self._stopping = False
        self._handler_task: asyncio.Task[object] | None = None
        self._delivery_task: asyncio.Task[object] | None = None
        self._late_drain: asyncio.Future[None] | None = None
        self._closed = False
        # What every delivery's ack subject starts with, once the first has come
        # ("$JS.ACK.<stream>.<consumer>."); no subject starts with a NUL.
        self._ack_prefix = "\x00"

    @property
    def subject(self) -> str:
        return self._subject

    @property
    def consumer_name(self) -> str:
        return self.plan.name

    async def start(self, watch: PermissionWatch) -> None:
        """Subscribe to the deliveries; return once the server has accepted (or refused)."""
        deliveries = f"{self.plan.deliver_subject!r} (deliveries of {self._subject!r})"
        try:
            self._nats_subscription = await self._client.subscribe(
                self.plan.deliver_subject, queue=self.plan.deliver_group or "", cb=self._receive
            )
            await watch.run("subscription", self.plan.deliver_subject, round_trip(self._client))
        except PermissionDenied as error:
            await self.stop()
            raise SubscribeError(
                f"NATS refused the subscription to {deliveries}: {error}"
            ) from None
        except Exception as error:
            ours = _ours(error, Operation.SUBSCRIBE, f"subscribing to {deliveries}")
            if ours is error:
                raise
            await self.stop()
            raise SubscribeError(f"could not subscribe to {self._subject!r}: {ours}") from error

    async def _receive(self, msg: Msg) -> None:
        # nats-py calls this from one task per subscription and awaits it before the
        # next message: the handler never runs twice at once.
        reply = msg.reply
        prefix = self._ack_prefix
        if not reply or not reply.startswith(prefix):
            if not reply or not reply.startswith("$JS.ACK."):
                # Status messages (heartbeats, flow control) are not deliveries.
                logger.debug("ignoring non-delivery on %s: %r", msg.subject, msg.headers)
                return
            try:
                prefix = self._ack_prefix = ack_prefix(reply)
            except ValueError as error:
                logger.warning("ignoring a delivery on %s: %s", msg.subject, error)
                return
        if self._stopping:
            # Arrived while closing: back to the consumer now (to another member, or
            # to this durable when it returns) instead of waiting out ack_wait.
            try:
                await msg.nak()
            except Exception as error:
                if _ours(error, Operation.ACK, "handing back") is error:
                    raise
            return
        message = JetStreamMessage(msg, self._client, self._parking, prefix)
        # Always the same task (nats-py's, of this subscription): looked up once.
        task = self._delivery_task
        if task is None:
            task = self._delivery_task = asyncio.current_task()
        self._handler_task = task
        try:
            await self._handler(message)
        except Exception:
            # The one guard: the core's handler does not raise; a raw handler that does
            # leaves its message unacknowledged, and the subscription lives on.
            logger.exception(
                "handler for %s raised; %r is left unacknowledged and comes back after ack_wait",
                self._subject,
                message,
            )
        finally:
            self._handler_task = None

    async def stop(self) -> None:
        """Stop the deliveries, without waiting for a running handler.

        What the server pushed meanwhile is handed back to the consumer at once.
        """
        self._stopping = True
        nats_subscription, self._nats_subscription = self._nats_subscription, None
        if nats_subscription is None or self._client.is_closed:
            return
        if self._handler_task is not None and self._handler_task is asyncio.current_task():
            # Closed by its own handler: drain once the handler has returned (draining
            # waits for it, and unsubscribing would cancel the caller).
            self._late_drain = asyncio.ensure_future(self._drain(nats_subscription))
            return
        if self._handler_task is not None:
            # The core drained before closing, so this handler overran its drain:
            # abandon it (nats-py cancels the task it runs in); its message comes back
            # after ack_wait.
            logger.warning(
                "handler for %s still running when its subscription closed; abandoned, "
                "its message comes back after ack_wait",
                self._subject,
            )
            await self._unsubscribe(nats_subscription)
        else:
            await self._drain(nats_subscription)
        try:
            await round_trip(self._client)
        except Exception as error:
            if _ours(error, Operation.SUBSCRIBE, "stopping") is error:
                raise

    async def _drain(self, nats_subscription: Subscription) -> None:
        # Drain, not unsubscribe: the round trip makes sure the server has stopped
        # pushing, and what it pushed meanwhile still reaches _receive (which hands it
        # back) instead of waiting out ack_wait. (nats-py leaves drain() unannotated.)
        try:
            draining = nats_subscription.drain()  # type: ignore[no-untyped-call]
            await asyncio.wait_for(draining, self._stop_timeout)
        except Exception as error:
            if _ours(error, Operation.SUBSCRIBE, "draining") is error:
                raise
            logger.debug("draining the deliveries of %s: %s", self._subject, error)
            await self._unsubscribe(nats_subscription)

    async def _unsubscribe(self, nats_subscription: Subscription) -> None:
        try:
            await nats_subscription.unsubscribe()
        except Exception as error:
            if _ours(error, Operation.SUBSCRIBE, "unsubscribing") is error:
                raise
            logger.debug("unsubscribing the deliveries of %s: %s", self._subject, error)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop()
        await self._parking.close(self._stop_timeout)
        self._on_closed(self)
        if not self.plan.durable:
            await self._consumers.delete_consumer_if_unused(self.plan)

    async def unsubscribe(self) -> None:
        if self._closed:
            # Closed already: the durable may still be removed.
            await self._consumers.delete_consumer(self.plan.name)
            return
        self._closed = True
        await self.stop()
        await self._parking.close(self._stop_timeout)
        self._on_closed(self)
        await self._consumers.delete_consumer(self.plan.name)

    def __repr__(self) -> str:
        return f"JetStreamSubscription(subject={self._subject!r}, consumer={self.plan.name!r})"
