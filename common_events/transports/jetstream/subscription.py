"""A subscription on a push consumer, and the messages it hands to the handler.

Messages go from nats-py's callback into a local queue, and one task awaits the handler
for each in turn: one subscription never runs two handlers at once, and closing it lets
the running handler finish instead of cancelling it half-way (nats-py's unsubscribe
cancels its callback task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common_events.errors import ConnectionLost
from common_events.transports.base import MessageHandler
from common_events.transports.jetstream.consumers import ConsumerPlan

logger = logging.getLogger("common_events.transports.jetstream")

_EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})


class SubscriptionOwner(Protocol):
    """What a subscription needs from its transport."""

    @property
    def connection(self) -> Client | None: ...

    @property
    def close_timeout(self) -> float: ...

    def forget(self, subscription: JetStreamSubscription) -> None: ...

    async def delete_consumer(self, name: str) -> None: ...

    async def delete_consumer_if_unused(self, plan: ConsumerPlan) -> None: ...


class JetStreamMessage:
    """One delivery from a push consumer."""

    __slots__ = ("_metadata", "_msg", "_settled")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self._metadata = msg.metadata
        self._settled = False

    @property
    def subject(self) -> str:
        return self._msg.subject

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def sequence(self) -> int:
        return int(self._metadata.sequence.stream)

    @property
    def redelivered(self) -> bool:
        return self._metadata.num_delivered > 1

    @property
    def delivery_count(self) -> int:
        return int(self._metadata.num_delivered)

    @property
    def timestamp(self) -> datetime:
        return self._metadata.timestamp

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
            await self._msg.ack()
        except nats.errors.ConnectionClosedError:
            raise ConnectionLost(
                "the connection is closed; the message will be redelivered"
            ) from None

    async def nak(self, delay: float | None = None) -> None:
        if self._settled:
            return
        self._settled = True
        try:
            await self._msg.nak(delay=delay if delay and delay > 0 else None)
        except nats.errors.ConnectionClosedError:
            raise ConnectionLost(
                "the connection is closed; the message will be redelivered"
            ) from None

    def __repr__(self) -> str:
        return (
            f"JetStreamMessage(subject={self.subject!r}, sequence={self.sequence}, "
            f"delivery_count={self.delivery_count})"
        )


class JetStreamSubscription:
    """A push-consumer subscription; ``close()`` keeps a durable, ``unsubscribe()`` not."""

    def __init__(
        self,
        owner: SubscriptionOwner,
        subject: str,
        handler: MessageHandler,
        plan: ConsumerPlan,
    ) -> None:
        self._owner = owner
        self._subject = subject
        self._handler = handler
        self.plan = plan
        # None wakes the loop when the subscription stops.
        self._queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._nats_subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False

    @property
    def subject(self) -> str:
        return self._subject

    @property
    def consumer_name(self) -> str:
        return self.plan.name

    async def start(self, client: Client) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"common-events jetstream {self.plan.name}"
        )
        self._nats_subscription = await client.subscribe(
            self.plan.deliver_subject, queue=self.plan.deliver_group or "", cb=self._receive
        )

    async def _receive(self, msg: Msg) -> None:
        # nats-py awaits this for every message; handing it to our own queue keeps the
        # handler out of nats-py's task, which unsubscribe() would cancel mid-handler.
        self._queue.put_nowait(msg)

    async def _run(self) -> None:
        while True:
            msg = await self._queue.get()
            if msg is None or self._stopping:
                self._queue.put_nowait(msg)
                return
            if not msg.reply or not msg.reply.startswith("$JS.ACK."):
                # Status messages (heartbeats, flow control) are not deliveries.
                logger.debug("ignoring non-delivery on %s: %r", msg.subject, msg.headers)
                continue
            try:
                message = JetStreamMessage(msg)
            except Exception:
                logger.exception("unreadable JetStream delivery on %s; skipped", msg.subject)
                continue
            try:
                await self._handler(message)
            except Exception:
                # The handler answers for its message: not acknowledged, it comes back
                # after ack_wait; the subscription itself lives on.
                logger.exception(
                    "handler failed on %s #%d (delivery %d); it will be redelivered",
                    message.subject,
                    message.sequence,
                    message.delivery_count,
                )

    async def stop(self) -> None:
        """Stop receiving, let the running handler finish, hand back what is queued."""
        self._stopping = True
        nats_subscription, self._nats_subscription = self._nats_subscription, None
        client = self._owner.connection
        if nats_subscription is not None and client is not None and not client.is_closed:
            # Drain, not unsubscribe: the round trip makes sure the server has stopped
            # pushing, and what it pushed meanwhile still reaches the queue (and goes
            # back below) instead of being dropped and waiting out ack_wait.
            # (nats-py leaves drain() unannotated.)
            draining = nats_subscription.drain()  # type: ignore[no-untyped-call]
            try:
                await asyncio.wait_for(draining, self._owner.close_timeout)
            except (nats.errors.Error, TimeoutError):
                with contextlib.suppress(nats.errors.Error):
                    await nats_subscription.unsubscribe()
        task, self._task = self._task, None
        if task is not None:
            # Wake the loop if it waits on an empty queue; it re-queues what it takes.
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(task), self._owner.close_timeout)
            except TimeoutError:
                logger.warning(
                    "handler on %s still running after %.0fs; cancelling it",
                    self._subject,
                    self._owner.close_timeout,
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Messages received but never handed to the handler go back to the consumer now
        # (to another group member, or to this durable when it returns) instead of
        # waiting out ack_wait.
        while not self._queue.empty():
            msg = self._queue.get_nowait()
            if msg is None or not msg.reply or not msg.reply.startswith("$JS.ACK."):
                continue
            if client is not None and not client.is_closed:
                with contextlib.suppress(nats.errors.Error):
                    await msg.nak()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop()
        self._owner.forget(self)
        if not self.plan.durable:
            await self._owner.delete_consumer_if_unused(self.plan)

    async def unsubscribe(self) -> None:
        if self._closed:
            # Closed already: the durable may still be removed.
            await self._owner.delete_consumer(self.plan.name)
            return
        self._closed = True
        await self.stop()
        self._owner.forget(self)
        await self._owner.delete_consumer(self.plan.name)

    def __repr__(self) -> str:
        return f"JetStreamSubscription(subject={self._subject!r}, consumer={self.plan.name!r})"
