"""An in-process broker with the delivery semantics of a real one.

Not a mock: messages are stored per subject with sequences, queue groups split work,
durable subscriptions resume where they left off, unacknowledged messages come back
after ``ack_wait`` with ``redelivered`` set, and no subscriber member holds more than
``max_in_flight`` unacknowledged messages. Services test listeners on it without a
server, and it is the first target of the conformance suite.

Durable state lives as long as the ``MemoryBroker`` object: share one broker between
transports to play several services in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from common_events.errors import TransportClosed
from common_events.transports.base import (
    ConnectionLostCallback,
    MessageHandler,
    PublishAck,
    SubscriptionOptions,
    TransportSubscription,
)
from common_events.transports.batch import publish_with_workers

logger = logging.getLogger(__name__)

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class StoredMessage:
    subject: str
    sequence: int
    data: bytes
    timestamp: datetime
    headers: Mapping[str, str]


@dataclass(slots=True)
class _Pending:
    """A delivered, unacknowledged message of one subscription state."""

    message: StoredMessage
    deliveries: int
    member: _Member | None
    due: float  # loop time at which it is delivered (again)


class MemoryMessage:
    """One delivery of a stored message to one subscriber member."""

    __slots__ = ("_delivery_count", "_done", "_pending", "_state", "_stored")

    def __init__(self, state: _SubscriptionState, pending: _Pending) -> None:
        self._state = state
        self._pending = pending
        self._stored = pending.message
        self._delivery_count = pending.deliveries
        self._done = False

    @property
    def subject(self) -> str:
        return self._stored.subject

    @property
    def data(self) -> bytes:
        return self._stored.data

    @property
    def sequence(self) -> int:
        return self._stored.sequence

    @property
    def redelivered(self) -> bool:
        return self._delivery_count > 1

    @property
    def delivery_count(self) -> int:
        return self._delivery_count

    @property
    def timestamp(self) -> datetime:
        return self._stored.timestamp

    @property
    def headers(self) -> Mapping[str, str]:
        return self._stored.headers

    async def ack(self) -> None:
        if not self._done:
            self._done = True
            self._state.ack(self._pending)

    async def nak(self, delay: float | None = None) -> None:
        if not self._done:
            self._done = True
            self._state.nak(self._pending, self._delivery_count, delay or 0.0)

    def __repr__(self) -> str:
        return (
            f"MemoryMessage(subject={self.subject!r}, sequence={self.sequence}, "
            f"delivery_count={self.delivery_count})"
        )


class _Member:
    """One subscriber of a subscription state, with its own in-flight budget."""

    def __init__(self, state: _SubscriptionState, handler: MessageHandler) -> None:
        self.state = state
        self.handler = handler
        self.in_flight = 0
        self.queue: asyncio.Queue[MemoryMessage] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        while True:
            message = await self.queue.get()
            try:
                await self.handler(message)
            except Exception:
                # The core's handler never raises; this guard only keeps a subscription
                # alive under a buggy raw handler. Ack and retry are not decided here:
                # unacknowledged, the message comes back after ack_wait.
                logger.exception(
                    "handler for %s raised; the message comes back after ack_wait",
                    message.subject,
                )


class _SubscriptionState:
    """What the broker keeps for one subscription: cursor, pending, members.

    A queue group's members share one state; a durable's state outlives its members.
    """

    def __init__(
        self, broker: MemoryBroker, subject: str, key: tuple[str, ...], options: SubscriptionOptions
    ) -> None:
        self.broker = broker
        self.subject = subject
        self.key = key
        self.options = options
        channel = broker.channel(subject)
        self.next_sequence = 1 if options.deliver_all_available else len(channel) + 1
        self.pending: dict[int, _Pending] = {}
        self.members: list[_Member] = []
        self._round_robin = itertools.count()
        self._wakeup = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None

    # -- members -------------------------------------------------------------------

    def add_member(self, handler: MessageHandler) -> _Member:
        member = _Member(self, handler)
        self.members.append(member)
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        self.wake()
        return member

    async def remove_member(self, member: _Member) -> None:
        if member in self.members:
            self.members.remove(member)
        # No drain here: the core drained before it closed the subscription. A handler
        # still running is abandoned: cancelled (as nats-py cancels a closed
        # subscription's handler) and not waited for. What it held comes back below.
        member.task.cancel()
        # What the member held comes back at once to the others (or on resume).
        now = asyncio.get_running_loop().time()
        for pending in self.pending.values():
            if pending.member is member:
                pending.member = None
                pending.due = now
        if not self.members and self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None
        self.wake()

    # -- acknowledgements ------------------------------------------------------------

    def ack(self, pending: _Pending) -> None:
        current = self.pending.get(pending.message.sequence)
        # An ack of an older delivery that was already handed to someone else still
        # counts: the message was processed (at-least-once, like the real brokers).
        if current is pending:
            del self.pending[pending.message.sequence]
            if pending.member is not None:
                pending.member.in_flight -= 1
            self.wake()

    def nak(self, pending: _Pending, delivery_count: int, delay: float) -> None:
        current = self.pending.get(pending.message.sequence)
        if current is pending and current.deliveries == delivery_count:
            if pending.member is not None:
                pending.member.in_flight -= 1
                pending.member = None
            pending.due = asyncio.get_running_loop().time() + max(delay, 0.0)
            self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    # -- dispatch --------------------------------------------------------------------

    def _member_with_room(self) -> _Member | None:
        count = len(self.members)
        start = next(self._round_robin)
        for offset in range(count):
            member = self.members[(start + offset) % count]
            if member.in_flight < self.options.max_in_flight:
                return member
        return None

    def _deliver(self, pending: _Pending, member: _Member) -> None:
        pending.deliveries += 1
        pending.member = member
        pending.due = asyncio.get_running_loop().time() + self.options.ack_wait
        member.in_flight += 1
        member.queue.put_nowait(MemoryMessage(self, pending))

    def _dispatch_once(self, now: float) -> float:
        """Deliver what can be delivered now; return the next loop time to look again."""
        next_due = math.inf
        # Redeliveries first: they are older than anything new.
        for pending in sorted(self.pending.values(), key=lambda p: p.message.sequence):
            if pending.due > now:
                next_due = min(next_due, pending.due)
                continue
            if pending.member is not None:
                # ack_wait ran out: the member no longer holds it.
                pending.member.in_flight -= 1
                pending.member = None
            member = self._member_with_room()
            if member is None:
                return next_due
            self._deliver(pending, member)
            next_due = min(next_due, pending.due)
        channel = self.broker.channel(self.subject)
        while self.next_sequence <= len(channel):
            member = self._member_with_room()
            if member is None:
                break
            stored = channel[self.next_sequence - 1]
            pending = _Pending(message=stored, deliveries=0, member=None, due=now)
            self.pending[stored.sequence] = pending
            self.next_sequence += 1
            self._deliver(pending, member)
            next_due = min(next_due, pending.due)
        return next_due

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            next_due = self._dispatch_once(loop.time())
            deadline = None if math.isinf(next_due) else next_due
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races with the event, and the pump would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._wakeup.wait()


class MemoryBroker:
    """The broker: stored messages per subject and the subscription states."""

    def __init__(self) -> None:
        self._channels: dict[str, list[StoredMessage]] = {}
        self._states: dict[tuple[str, ...], _SubscriptionState] = {}
        self._anonymous = itertools.count(1)

    def channel(self, subject: str) -> list[StoredMessage]:
        return self._channels.setdefault(subject, [])

    def subjects(self) -> list[str]:
        """Every subject something was published on, sorted."""
        return sorted(subject for subject, stored in self._channels.items() if stored)

    def messages(self, subject: str) -> tuple[StoredMessage, ...]:
        """Everything stored on ``subject``, oldest first."""
        return tuple(self._channels.get(subject, ()))

    def publish(self, subject: str, data: bytes, headers: Mapping[str, str] | None) -> int:
        channel = self.channel(subject)
        stored = StoredMessage(
            subject=subject,
            sequence=len(channel) + 1,
            data=bytes(data),
            timestamp=datetime.now(UTC),
            headers=MappingProxyType(dict(headers)) if headers else _NO_HEADERS,
        )
        channel.append(stored)
        for state in self._states.values():
            if state.subject == subject:
                state.wake()
        return stored.sequence

    def _state_key(self, subject: str, options: SubscriptionOptions) -> tuple[str, ...]:
        if options.queue_group is not None:
            return (subject, "queue", options.queue_group, options.durable_name or "")
        if options.durable_name is not None:
            return (subject, "durable", options.durable_name)
        return (subject, "plain", str(next(self._anonymous)))

    def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> MemorySubscription:
        key = self._state_key(subject, options)
        state = self._states.get(key)
        if state is None:
            state = _SubscriptionState(self, subject, key, options)
            self._states[key] = state
        else:
            # Like the real brokers, the durable keeps its position; a returning
            # member may change its ack wait and in-flight budget.
            state.options = options
        return MemorySubscription(self, state, state.add_member(handler))

    async def leave(self, subscription: MemorySubscription, *, keep_durable: bool) -> None:
        state = subscription.state
        await state.remove_member(subscription.member)
        if state.members:
            return
        if keep_durable and state.options.durable_name is not None:
            return
        self._states.pop(state.key, None)

    def has_durable(self, subject: str, durable_name: str, queue_group: str | None = None) -> bool:
        """Whether the broker keeps the durable state (for tests and tools)."""
        options = SubscriptionOptions(queue_group=queue_group, durable_name=durable_name)
        return self._state_key(subject, options) in self._states


class MemorySubscription:
    def __init__(self, broker: MemoryBroker, state: _SubscriptionState, member: _Member) -> None:
        self._broker = broker
        self.state = state
        self.member = member
        self._closed = False

    @property
    def subject(self) -> str:
        return self.state.subject

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._broker.leave(self, keep_durable=True)

    async def unsubscribe(self) -> None:
        if not self._closed:
            self._closed = True
            await self._broker.leave(self, keep_durable=False)


class MemoryTransport:
    """A connection to a ``MemoryBroker``; ``connect("memory://")`` makes a fresh broker."""

    def __init__(self, broker: MemoryBroker | None = None, url: str = "memory://") -> None:
        self.broker = broker if broker is not None else MemoryBroker()
        self._url = url
        self._subscriptions: list[MemorySubscription] = []
        self._closed = False

    @property
    def url(self) -> str:
        return self._url

    @property
    def connected(self) -> bool:
        """An in-process broker is reachable until ``close()``."""
        return not self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("the memory transport is closed")

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        self._check_open()
        sequence = self.broker.publish(subject, data, headers)
        return PublishAck(subject=subject, sequence=sequence)

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        # Every publish completes at once in process: nothing to overlap.
        return await publish_with_workers(self.publish, subject, payloads, workers=1)

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription:
        self._check_open()
        subscription = self.broker.subscribe(subject, handler, options)
        self._subscriptions.append(subscription)
        return subscription

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        # An in-process broker cannot be lost; nothing will ever be called.
        del callback

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:
            await subscription.close()
        self._subscriptions.clear()


async def connect(
    url: str = "memory://", *, subjects: Sequence[str] = (), **options: object
) -> MemoryTransport:
    """A transport on a fresh in-process broker. ``broker=`` shares an existing one.

    ``subjects`` (every subject the core publishes on) is accepted and ignored: the
    in-process broker stores any subject.
    """
    del subjects
    broker = options.pop("broker", None)
    if broker is not None and not isinstance(broker, MemoryBroker):
        raise TypeError(f"broker= must be a MemoryBroker, not {type(broker).__name__}")
    if options:
        raise TypeError(f"unknown options for memory://: {', '.join(sorted(options))}")
    return MemoryTransport(broker, url)

