"""What the in-memory broker keeps for one subscription: the cursor, the pending
messages and the members, and the dispatch that delivers, redelivers after
``ack_wait`` and keeps each member within ``max_in_flight``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from typing import TYPE_CHECKING

from common_events.transports.base import MessageHandler, SubscriptionOptions
from common_events.transports.memory.message import MemoryMessage, _Pending

if TYPE_CHECKING:
    from common_events.transports.memory.broker import MemoryBroker

# The name the broker logged under as one module, kept for the filters that use it.
logger = logging.getLogger("common_events.transports.memory")


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
