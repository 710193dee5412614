"""The PubAck pipeline of one streaming session: slots, the pending map, deadlines.

Every publish is sent at once with a guid and waits for the server's PubAck on this
session's ack inbox. At most ``max_pub_acks_inflight`` publishes are unacknowledged;
more wait, in order, for a free slot. A publish without its PubAck in time fails with
``PublishTimeout`` on its own, without holding up the others.

Each waiting publish keeps its payload (the caller holds it until the PubAck anyway)
and the number of its last send, so that after an outage (``recovery``) those sent
before it can go again with the same guid.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import re
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg

from common_events.errors import PublishError, PublishTimeout, TransportError
from common_events.transports.nats_connection import Operation, classify_nats_error
from common_events.transports.stan import protocol

logger = logging.getLogger(__name__)

# A subject a streaming channel can have: dot-separated non-empty tokens of printable
# characters, no wildcards (STAN has none).
_VALID_SUBJECT = re.compile(r"[^.\s*>]+(\.[^.\s*>]+)*")

# Subjects whose route is kept; a service publishes on a handful of them.
_MAX_ROUTES = 10_000

# What a publish that fails without its PubAck must tell: the server may have stored it
# (its PubAck was lost) or not (the message was). Publishing it again may store it twice.
_OUTCOME_UNKNOWN = "it may or may not have been stored"


class PublishingOwner(Protocol):
    """What the pipeline needs from its session."""

    @property
    def client_id(self) -> str: ...

    @property
    def conn_id(self) -> bytes: ...

    @property
    def subjects(self) -> protocol.SessionSubjects: ...

    @property
    def nats(self) -> Client: ...

    @property
    def is_connected(self) -> bool: ...

    def check_usable(self) -> None:
        """Raise the error that says why the session cannot publish, if it cannot."""
        ...


class PubAckSlots:
    """A FIFO counting semaphore whose release is O(1).

    ``asyncio.Semaphore`` scans its waiters on every release in Python 3.11, which
    turns thousands of publishes waiting for a free PubAck slot quadratic.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        # One caller waiting for room for many (publish_many), woken once, not per slot.
        self._room: tuple[int, asyncio.Future[None]] | None = None

    @property
    def free(self) -> int:
        return self._free if not self._waiters else 0

    async def wait_for_room(self, wanted: int) -> None:
        """Return once ``wanted`` slots are free (taking none): a batch then sends that
        many without a wake-up per slot."""
        wanted = max(1, min(wanted, self.size))
        if self.free >= wanted:
            return
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room = (wanted, room)
        try:
            await room
        finally:
            if self._room is not None and self._room[1] is room:
                self._room = None

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
        room = self._room
        if room is not None and self._free >= room[0]:
            self._room = None
            if not room[1].done():
                room[1].set_result(None)


class _PendingPublish:
    """A publish sent and waiting for its PubAck."""

    __slots__ = ("data", "future", "sent", "subject", "timeout", "timer")

    def __init__(
        self,
        future: asyncio.Future[str],
        subject: str,
        timeout: float,
        timer: asyncio.TimerHandle | None,
        data: bytes,
        sent: int,
    ) -> None:
        self.future = future
        self.subject = subject
        self.timeout = timeout
        self.timer = timer
        self.data = data
        """The payload, for sending it again."""
        self.sent = sent
        """The number of its last send (``PubAckPipeline.sent``)."""


class PubAckPipeline:
    """Publishes of one session waiting for their PubAcks."""

    def __init__(
        self, owner: PublishingOwner, *, max_inflight: int, publish_timeout: float
    ) -> None:
        self._owner = owner
        self.publish_timeout = publish_timeout
        self.ack_subject = f"{protocol.ACK_PREFIX}.{os.urandom(11).hex()}"
        """Where the server sends this session's PubAcks."""
        self._guid_prefix = os.urandom(8).hex()
        self._guid_counter = itertools.count(1)
        self._pending: dict[str, _PendingPublish] = {}
        # Publishes with the default timeout expire in the order they were sent, so one
        # timer over a FIFO of deadlines serves them all (a timer per publish costs more
        # than the rest of the publish). Other timeouts get a timer of their own.
        self._deadlines: collections.deque[tuple[float, str]] = collections.deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._slots = PubAckSlots(max_inflight)
        # Per subject: the NATS subject to publish on and the PubMsg encoder.
        self._routes: dict[str, tuple[str, protocol.PubMsgEncoder]] = {}
        self.sent = 0
        """Sends so far, sending again included; each send is numbered."""
        # Sends numbered below this may have been lost in an outage.
        self._suspect_below = 0

    @property
    def inflight(self) -> int:
        """Publishes sent and not yet acknowledged."""
        return len(self._pending)

    @property
    def room(self) -> int:
        """Slots free now."""
        return self._slots.free

    async def wait_for_room(self) -> None:
        """While no slot is free, wait until half the window is (for a batch)."""
        slots = self._slots
        if slots.free == 0:
            await slots.wait_for_room(slots.size // 2)

    async def publish_async(
        self, subject: str, data: bytes, *, ack_timeout: float | None = None
    ) -> asyncio.Future[str]:
        """Send one message; the returned future resolves to its guid on PubAck."""
        owner = self._owner
        owner.check_usable()
        route = self._routes.get(subject)
        if route is None:
            route = self._route_for(subject)
        if not self._slots.try_acquire():
            await self._slots.acquire()
        if not owner.is_connected:
            self._slots.release()
            owner.check_usable()
        loop = asyncio.get_running_loop()
        guid = f"{self._guid_prefix}{next(self._guid_counter):x}"
        future: asyncio.Future[str] = loop.create_future()
        self.sent = sent = self.sent + 1
        default_timeout = self.publish_timeout
        if ack_timeout is None or ack_timeout == default_timeout:
            entry = _PendingPublish(future, subject, default_timeout, None, data, sent)
            self._deadlines.append((loop.time() + default_timeout, guid))
            if self._expiry is None:
                self._expiry = loop.call_later(default_timeout, self._expire_due)
        else:
            timer = loop.call_later(ack_timeout, self._expire, guid)
            entry = _PendingPublish(future, subject, ack_timeout, timer, data, sent)
        self._pending[guid] = entry
        nats_subject, encoder = route
        try:
            await owner.nats.publish(
                nats_subject, encoder.encode(guid, data), reply=self.ack_subject
            )
        except Exception as error:
            if self._pending.pop(guid, None) is not None:
                if entry.timer is not None:
                    entry.timer.cancel()
                self._slots.release()
            failure = classify_nats_error(error, Operation.PUBLISH, f"publish to {subject!r}")
            if failure is None or failure.error is error:
                raise
            raise failure.error from error
        return future

    def _route_for(self, subject: str) -> tuple[str, protocol.PubMsgEncoder]:
        # Checked once per subject: a NATS connection made by this package skips
        # nats-py's per-message check.
        if not _VALID_SUBJECT.fullmatch(subject):
            raise PublishError(
                f"invalid subject {subject!r}: no spaces, no wildcards, no empty tokens"
            )
        owner = self._owner
        route = (
            protocol.publish_subject(owner.subjects.pub_prefix, subject),
            protocol.PubMsgEncoder(
                client_id=owner.client_id, subject=subject, conn_id=owner.conn_id
            ),
        )
        if len(self._routes) < _MAX_ROUTES:
            self._routes[subject] = route
        return route

    async def on_pub_ack(self, msg: Msg) -> None:
        """nats-py callback of the ack inbox."""
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
        self._slots.release()
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
        self._slots.release()
        if not entry.future.done():
            entry.future.set_exception(
                PublishTimeout(
                    f"no PubAck for a publish to {entry.subject!r} within "
                    f"{entry.timeout}s (guid {guid}): {_OUTCOME_UNKNOWN}"
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

    # -- after an outage -----------------------------------------------------------------

    @property
    def oldest(self) -> str | None:
        """The guid of the publish that has waited longest, if any."""
        return next(iter(self._pending), None)

    def suspect_sent(self) -> None:
        """An outage: what was sent so far may not have reached the server, or its PubAck
        may not have reached us."""
        self._suspect_below = self.sent + 1

    async def resend_suspects(self) -> int:
        """Send again, with their guids, the waiting publishes that may have been lost;
        return how many were sent. The server takes publishes again (a PING said so)."""
        below, self._suspect_below = self._suspect_below, 0
        suspects = [(guid, entry) for guid, entry in self._pending.items() if entry.sent < below]
        nats = self._owner.nats
        resent = 0
        for guid, entry in suspects:
            if entry.future.done():
                continue
            nats_subject, encoder = self._routes.get(entry.subject) or self._route_for(
                entry.subject
            )
            self.sent = entry.sent = self.sent + 1
            try:
                await nats.publish(
                    nats_subject, encoder.encode(guid, entry.data), reply=self.ack_subject
                )
            except Exception as error:
                # The connection dropped again: the next recovery sends the rest.
                self._suspect_below = self.sent + 1
                logger.debug("sending again stopped: %s", error)
                break
            resent += 1
        return resent

    def fail_all(self, error: TransportError) -> None:
        """Fail every publish still waiting for its PubAck with an error of ``error``'s
        type that says so, and that its outcome is unknown."""
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for guid, entry in pending.items():
            if entry.timer is not None:
                entry.timer.cancel()
            self._slots.release()
            if not entry.future.done():
                entry.future.set_exception(
                    type(error)(
                        f"{error}; a publish to {entry.subject!r} (guid {guid}) was waiting "
                        f"for its PubAck: {_OUTCOME_UNKNOWN}"
                    )
                )
