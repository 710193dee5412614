"""A subscription on a push consumer, and the messages it hands to the handler.

nats-py runs the handler from one task per subscription, one message at a time; closing
waits for the running handler instead of cancelling it half-way, and hands back to the
consumer what arrives meanwhile.
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
        self._nats_subscription: Subscription | None = None
        self._stopping = False
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def subject(self) -> str:
        return self._subject

    @property
    def consumer_name(self) -> str:
        return self.plan.name

    async def start(self, client: Client) -> None:
        self._nats_subscription = await client.subscribe(
            self.plan.deliver_subject, queue=self.plan.deliver_group or "", cb=self._receive
        )

    async def _receive(self, msg: Msg) -> None:
        # nats-py calls this from one task per subscription and awaits it before the
        # next message: the handler never runs twice at once.
        if not msg.reply or not msg.reply.startswith("$JS.ACK."):
            # Status messages (heartbeats, flow control) are not deliveries.
            logger.debug("ignoring non-delivery on %s: %r", msg.subject, msg.headers)
            return
        if self._stopping:
            # Arrived while closing: back to the consumer now (to another member, or
            # to this durable when it returns) instead of waiting out ack_wait.
            with contextlib.suppress(nats.errors.Error):
                await msg.nak()
            return
        try:
            message = JetStreamMessage(msg)
        except Exception:
            logger.exception("unreadable JetStream delivery on %s; skipped", msg.subject)
            return
        self._idle.clear()
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
        finally:
            self._idle.set()

    async def stop(self) -> None:
        """Stop receiving; let the running handler finish, hand back what arrives."""
        self._stopping = True
        nats_subscription, self._nats_subscription = self._nats_subscription, None
        if nats_subscription is None:
            return
        # nats-py's unsubscribe cancels the task that runs the handler: wait for the
        # handler first, bounded, so a close never interrupts work half-way.
        try:
            await asyncio.wait_for(self._idle.wait(), self._owner.close_timeout)
        except TimeoutError:
            logger.warning(
                "handler on %s still running after %.0fs; cancelling it",
                self._subject,
                self._owner.close_timeout,
            )
        client = self._owner.connection
        if client is None or client.is_closed:
            return
        # Drain, not unsubscribe: the round trip makes sure the server has stopped
        # pushing, and what it pushed meanwhile still reaches _receive (which hands it
        # back) instead of being dropped and waiting out ack_wait.
        # (nats-py leaves drain() unannotated.)
        draining = nats_subscription.drain()  # type: ignore[no-untyped-call]
        try:
            await asyncio.wait_for(draining, self._owner.close_timeout)
        except (nats.errors.Error, TimeoutError):
            with contextlib.suppress(nats.errors.Error):
                await nats_subscription.unsubscribe()

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
