"""An in-process broker with the delivery semantics of a real one.

Not a mock: messages are stored per subject with sequences, queue groups split work,
durable subscriptions resume where they left off, unacknowledged messages come back
after ``ack_wait`` with ``redelivered`` set, and no subscriber member holds more than
``max_in_flight`` unacknowledged messages. Services test listeners on it without a
server, and it is the first target of the conformance suite.

Durable state lives as long as the ``MemoryBroker`` object: share one broker between
transports to play several services in one process.

Like a real server it has limits: a message over ``max_payload`` bytes is refused (1 MiB
by default, as nats-server), and the oldest messages are dropped past ``max_messages``
or ``max_bytes`` (see ``MemoryBroker``), so a long test run does not grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from common_events.errors import ConfigurationError, PublishError, TransportClosed
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

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""nats-server's default maximum payload."""
DEFAULT_MAX_MESSAGES = 1_000_000
DEFAULT_MAX_BYTES = 1024**3
"""Retention defaults: far more than a test suite publishes, far less than a machine has."""


def message_size(data: bytes, headers: Mapping[str, str] | None) -> int:
    """Bytes of a message as nats-server counts them against its maximum payload."""
    if not headers:
        return len(data)
    lines = sum(len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items())
    return len(data) + len(b"NATS/1.0\r\n") + lines + len(b"\r\n")


@dataclass(frozen=True, slots=True)
class StoredMessage:
    subject: str
    sequence: int
    data: bytes
    timestamp: datetime
    headers: Mapping[str, str]


class _Channel:
    """The retained messages of one subject: sequences ``first_sequence`` up to
    ``next_sequence - 1``, oldest first. Sequences go on after the oldest are dropped."""

    __slots__ = ("_head", "_messages", "first_sequence", "next_sequence")

    def __init__(self) -> None:
        # A list with a moving head: O(1) lookup by sequence, amortised O(1) drop.
        self._messages: list[StoredMessage | None] = []
        self._head = 0
        self.first_sequence = 1
        self.next_sequence = 1

    def __len__(self) -> int:
        return len(self._messages) - self._head

    def append(self, stored: StoredMessage) -> None:
        self._messages.append(stored)
        self.next_sequence += 1

    def get(self, sequence: int) -> StoredMessage | None:
        """The message stored under ``sequence``; ``None`` once dropped (or not yet)."""
        index = sequence - self.first_sequence
        if 0 <= index < len(self):
            return self._messages[self._head + index]
        return None

    def drop_oldest(self) -> StoredMessage:
        stored = self._messages[self._head]
        assert stored is not None
        self._messages[self._head] = None
        self._head += 1
        self.first_sequence += 1
        if self._head >= 1024 and self._head * 2 >= len(self._messages):
            del self._messages[: self._head]
            self._head = 0
        return stored

    def retained(self) -> tuple[StoredMessage, ...]:
        return tuple(stored for stored in self._messages[self._head :] if stored is not None)


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

    async def in_progress(self) -> bool:
        """Restart this delivery's ``ack_wait``; ``False`` once it ran out already."""
        return self._done or self._state.touch(self._pending, self._delivery_count)

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
        channel = broker._channel(subject)
        self.next_sequence = (
            channel.first_sequence if options.deliver_all_available else channel.next_sequence
        )
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

    def touch(self, pending: _Pending, delivery_count: int) -> bool:
        """The handler of this delivery is still working: its ack wait starts again."""
        current = self.pending.get(pending.message.sequence)
        if current is not pending or current.deliveries != delivery_count:
            return False
        if pending.member is None:
            # Its ack wait ran out: it is due to be delivered again.
            return False
        # The pump wakes at the old deadline, finds it not due and waits again.
        pending.due = asyncio.get_running_loop().time() + self.options.ack_wait
        return True

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
        channel = self.broker._channel(self.subject)
        # Redeliveries first: they are older than anything new.
        for pending in sorted(self.pending.values(), key=lambda p: p.message.sequence):
            if pending.due > now:
                next_due = min(next_due, pending.due)
                continue
            if pending.member is not None:
                # ack_wait ran out: the member no longer holds it.
                pending.member.in_flight -= 1
                pending.member = None
            if channel.get(pending.message.sequence) is None:
                # Dropped by the retention limits meanwhile: not delivered again, as a
                # JetStream consumer skips a message its stream no longer holds.
                del self.pending[pending.message.sequence]
                continue
            member = self._member_with_room()
            if member is None:
                return next_due
            self._deliver(pending, member)
            next_due = min(next_due, pending.due)
        # Messages dropped before this subscription had them are skipped.
        self.next_sequence = max(self.next_sequence, channel.first_sequence)
        while self.next_sequence < channel.next_sequence:
            member = self._member_with_room()
            if member is None:
                break
            stored = channel.get(self.next_sequence)
            assert stored is not None
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
    """The broker: stored messages per subject and the subscription states.

    Its limits are those of a server. A message larger than ``max_payload`` bytes
    (payload and headers, counted as nats-server counts them) is refused with
    ``PublishError``. Retention is that of a JetStream stream with limits retention (and
    of NATS Streaming's channel limits), over all subjects at once: past ``max_messages``
    messages or ``max_bytes`` bytes, the oldest are dropped, whether or not every
    subscription has had them or acknowledged them. A subscription that had not received
    a dropped message skips it; one delivered and not acknowledged is not delivered
    again. Sequences go on from where they were. The defaults (1,000,000 messages, 1 GiB)
    hold far more than a test suite publishes.
    """

    def __init__(
        self,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        for name, value in (
            ("max_messages", max_messages),
            ("max_bytes", max_bytes),
            ("max_payload", max_payload),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive whole number")
        if max_bytes < max_payload:
            raise ConfigurationError(
                f"max_bytes ({max_bytes}) must be at least max_payload ({max_payload}): "
                "the broker must be able to keep the largest message it takes"
            )
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_payload = max_payload
        self._channels: dict[str, _Channel] = {}
        self._order: deque[_Channel] = deque()
        """The channel of every retained message, in publish order: the oldest first."""
        self._stored_bytes = 0
        self._dropped = 0
        self._states: dict[tuple[str, ...], _SubscriptionState] = {}
        self._anonymous = itertools.count(1)

    def _channel(self, subject: str) -> _Channel:
        channel = self._channels.get(subject)
        if channel is None:
            channel = self._channels[subject] = _Channel()
        return channel

    @property
    def stored_messages(self) -> int:
        """Messages retained now, on every subject."""
        return len(self._order)

    @property
    def stored_bytes(self) -> int:
        """Bytes retained now (payloads and headers), on every subject."""
        return self._stored_bytes

    @property
    def dropped(self) -> int:
        """Messages dropped so far to keep within ``max_messages`` and ``max_bytes``."""
        return self._dropped

    def subjects(self) -> list[str]:
        """Every subject that holds messages, sorted."""
        return sorted(subject for subject, stored in self._channels.items() if len(stored))

    def messages(self, subject: str) -> tuple[StoredMessage, ...]:
        """Everything retained on ``subject``, oldest first."""
        channel = self._channels.get(subject)
        return channel.retained() if channel is not None else ()

    def publish(self, subject: str, data: bytes, headers: Mapping[str, str] | None) -> int:
        size = message_size(data, headers)
        if size > self.max_payload:
            raise PublishError(
                f"publish to {subject!r}: the message is larger than the server's maximum "
                f"payload ({size} > {self.max_payload} bytes); nothing was stored"
            )
        channel = self._channel(subject)
        stored = StoredMessage(
            subject=subject,
            sequence=channel.next_sequence,
            data=bytes(data),
            timestamp=datetime.now(UTC),
            headers=MappingProxyType(dict(headers)) if headers else _NO_HEADERS,
        )
        channel.append(stored)
        self._order.append(channel)
        self._stored_bytes += size
        while len(self._order) > self.max_messages or self._stored_bytes > self.max_bytes:
            self._drop_oldest()
        for state in self._states.values():
            if state.subject == subject:
                state.wake()
        return stored.sequence

    def _drop_oldest(self) -> None:
        # Each channel appends in publish order, so the oldest message of all is the
        # oldest of the channel that comes first here.
        dropped = self._order.popleft().drop_oldest()
        self._stored_bytes -= message_size(dropped.data, dropped.headers)
        self._dropped += 1

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

    @property
    def max_payload(self) -> int | None:
        return self.broker.max_payload

    @property
    def carries_headers(self) -> bool:
        return True

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

    ``max_messages``, ``max_bytes`` and ``max_payload`` set the fresh broker's limits
    (see ``MemoryBroker``); a shared broker keeps its own. ``subjects`` (every subject
    the core publishes on) is accepted and ignored: the in-process broker stores any
    subject.
    """
    del subjects
    broker = options.pop("broker", None)
    if broker is not None and not isinstance(broker, MemoryBroker):
        raise TypeError(f"broker= must be a MemoryBroker, not {type(broker).__name__}")
    limits = {name: options.pop(name) for name in _LIMITS if name in options}
    if options:
        raise TypeError(f"unknown options for memory://: {', '.join(sorted(options))}")
    if broker is None:
        broker = MemoryBroker(**limits)  # type: ignore[arg-type]
    elif limits:
        raise ConfigurationError(
            f"{', '.join(sorted(limits))} cannot be given with broker=: a shared broker "
            "keeps the limits it was made with"
        )
    return MemoryTransport(broker, url)


_LIMITS = ("max_messages", "max_bytes", "max_payload")

