"""The PubAck pipeline of one streaming session: the window, the queue, the deadlines.

Every publish goes out with a guid and waits for the server's PubAck on this session's
ack inbox. At most ``max_pub_acks_inflight`` publishes are unacknowledged (the window);
a publish that finds the window full joins a FIFO queue, and the PubAck that frees a
slot sends the head of the queue itself. A caller waiting for its PubAck is therefore
woken once, when that PubAck comes, however long it queued: with thousands of publishes
gathered at once, a wake-up per free slot cost about as much as the rest of the publish.
A publish without its PubAck in time fails with ``PublishTimeout`` on its own, without
holding up the others; the time counts from its send, not from its place in the queue.

Each publish keeps its payload (the caller holds it until the PubAck anyway, so it costs
no copy) and the number of its last send, so that after an outage (``recovery``) those
sent before it can go again with the same guid.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import re
from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg

from common_events.errors import PublishError, PublishTimeout, TransportError
from common_events.transports.base import PublishAck, PublishConfirmation
from common_events.transports.nats_connection import (
    Operation,
    classify_nats_error,
    publish_eagerly,
)
from common_events.transports.stan import protocol

logger = logging.getLogger(__name__)

# A subject a streaming channel can have: dot-separated non-empty tokens of printable
# characters, no wildcards (STAN has none).
_VALID_SUBJECT = re.compile(r"[^.\s*>]+(\.[^.\s*>]+)*")

# Subjects whose route is kept; a service publishes on a handful of them.
_MAX_ROUTES = 10_000

# A batch lets the event loop run after this many sends, so that nats-py's flusher
# writes them and the server starts on them while the batch encodes the rest (without
# it the server waited for whole half windows: about a tenth of publish_many's time).
_BATCH_FLUSH = 128

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


class _Publish:
    """One publish, from the call to its PubAck: queued, then sent and waiting."""

    __slots__ = (
        "ack",
        "data",
        "future",
        "guid",
        "route",
        "sent",
        "subject",
        "timeout",
        "timer",
        "waiter",
    )

    def __init__(
        self,
        future: asyncio.Future[Any],
        guid: str,
        subject: str,
        route: tuple[str, protocol.PubMsgEncoder],
        data: bytes,
        timeout: float,
    ) -> None:
        self.future = future
        """Resolves on PubAck: to ``ack`` where it is set, else to the guid."""
        self.ack: PublishAck | None = None
        self.guid = guid
        self.subject = subject
        self.route = route
        """The NATS subject to send on and the encoder of the ``PubMsg``."""
        self.data = data
        """The payload (the caller's bytes, not a copy), encoded at each send."""
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None
        """Its own expiry, when its timeout is not the pipeline's default."""
        self.sent = 0
        """The number of its last send (``PubAckPipeline.sent``); 0 while queued."""
        self.waiter: asyncio.Future[None] | None = None
        """Set for a ``publish_async`` caller held back while the publish queues:
        resolves once it is sent."""


class PubAckPipeline:
    """Publishes of one session: queued for the window, or sent and waiting for their
    PubAcks."""

    def __init__(
        self, owner: PublishingOwner, *, max_inflight: int, publish_timeout: float
    ) -> None:
        self._owner = owner
        self.publish_timeout = publish_timeout
        self.ack_subject = f"{protocol.ACK_PREFIX}.{os.urandom(11).hex()}"
        """Where the server sends this session's PubAcks."""
        self._guid_prefix = os.urandom(8).hex()
        self._guid_counter = itertools.count(1)
        self.window = max_inflight
        """``max_pub_acks_inflight``: publishes sent and not yet acknowledged, at most."""
        self._free = max_inflight
        self._pending: dict[str, _Publish] = {}
        # Publishes waiting for a slot, in the order they were made; the PubAck (or the
        # expiry) that frees a slot sends the head. Cancelled ones are skipped then.
        self._queue: collections.deque[_Publish] = collections.deque()
        # Whether a coroutine is sending from the queue (one at a time keeps it FIFO).
        self._sending = False
        self._sender: asyncio.Task[None] | None = None
        # One caller waiting for room for many (publish_many), woken once, not per slot.
        self._room: tuple[int, asyncio.Future[None]] | None = None
        # Publishes with the default timeout expire in the order they were sent, so one
        # timer over a FIFO of deadlines serves them all (a timer per publish costs more
        # than the rest of the publish). Other timeouts get a timer of their own.
        self._deadlines: collections.deque[tuple[float, str]] = collections.deque()
        self._expiry: asyncio.TimerHandle | None = None
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
        """Slots free now for a publish that is not to queue."""
        return self._free if not self._queue else 0

    async def wait_for_room(self) -> None:
        """While no slot is free, wait until half the window is and nothing queues (for
        a batch, which then sends that many without a wake-up per slot)."""
        if self.room:
            return
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room = (max(1, self.window // 2), room)
        try:
            await room
        finally:
            if self._room is not None and self._room[1] is room:
                self._room = None

    # -- publishing ----------------------------------------------------------------------

    def _make(
        self,
        subject: str,
        data: bytes,
        ack_timeout: float | None,
        future: asyncio.Future[Any] | None = None,
    ) -> _Publish:
        """A publish with its guid, ready to go out (or to queue); ``future`` (else a
        new one) is what its PubAck resolves."""
        self._owner.check_usable()
        route = self._routes.get(subject)
        if route is None:
            route = self._route_for(subject)
        return _Publish(
            asyncio.get_running_loop().create_future() if future is None else future,
            f"{self._guid_prefix}{next(self._guid_counter):x}",
            subject,
            route,
            data,
            self.publish_timeout if ack_timeout is None else ack_timeout,
        )

    async def publish_async(
        self,
        subject: str,
        data: bytes,
        *,
        ack_timeout: float | None = None,
        hold_back: bool = True,
    ) -> asyncio.Future[str]:
        """Send one message; the returned future resolves to its guid on PubAck.

        While the window is full the message queues, in order, and the PubAck that frees
        a slot sends it. With ``hold_back`` the caller waits until it is sent, which
        bounds the queue for a caller that does not await the future (the callback
        style). Without, it returns at once and the caller is to await the future (that
        bounds the queue then): it wakes once, for its PubAck."""
        # _make and _register written out: this is every single publish's path, where
        # the two calls cost about 2 % of a callback-style publish.
        self._owner.check_usable()
        route = self._routes.get(subject)
        if route is None:
            route = self._route_for(subject)
        loop = asyncio.get_running_loop()
        guid = f"{self._guid_prefix}{next(self._guid_counter):x}"
        timeout = self.publish_timeout if ack_timeout is None else ack_timeout
        entry = _Publish(loop.create_future(), guid, subject, route, data, timeout)
        if self._free and not self._queue:
            self._free -= 1
            self.sent = entry.sent = self.sent + 1
            if timeout == self.publish_timeout:
                self._deadlines.append((loop.time() + timeout, guid))
                if self._expiry is None:
                    self._expiry = loop.call_later(timeout, self._expire_due)
            else:
                entry.timer = loop.call_later(timeout, self._expire, guid)
            self._pending[guid] = entry
            nats_subject, encoder = route
            try:
                await self._owner.nats.publish(
                    nats_subject, encoder.encode(guid, data), reply=self.ack_subject
                )
            except Exception as error:
                failure = self._unsent(entry, error)
                if failure is error:
                    raise
                raise failure from error
            except asyncio.CancelledError:
                entry.future.cancel()  # nobody will read it
                raise
            return entry.future
        self._queue.append(entry)
        if not hold_back:
            return entry.future
        waiter: asyncio.Future[None] = loop.create_future()
        entry.waiter = waiter
        try:
            await waiter
        except asyncio.CancelledError:
            entry.future.cancel()  # the queue skips it if it was not sent yet
            raise
        return entry.future

    def publish_now(self, subject: str, data: bytes) -> PublishConfirmation:
        """Send one message, or queue it while the window is full (the PubAck that frees
        a slot sends it); return its confirmation, which resolves to its ``PublishAck``.

        Never waits, and needs no task: nats-py takes the message in line
        (``publish_eagerly``). Raises, before anything is sent, what says the session
        cannot publish or the subject is invalid; a failed send fails the confirmation.
        The caller is to await the confirmation, which bounds the queue."""
        confirmation = PublishConfirmation(loop=asyncio.get_running_loop())
        entry = self._make(subject, data, None, confirmation)
        entry.ack = PublishAck(subject=subject, guid=entry.guid)
        if not self._free or self._queue:
            self._queue.append(entry)
            return confirmation
        self._free -= 1
        self._register(entry)
        nats_subject, encoder = entry.route
        try:
            rest = publish_eagerly(
                self._owner.nats, nats_subject, encoder.encode(entry.guid, data), self.ack_subject
            )
        except Exception as error:
            self._fail_unsent(entry, error)
        else:
            if rest is not None:
                rest.add_done_callback(partial(self._finished_sending, entry))
        return confirmation

    def _finished_sending(self, entry: _Publish, sending: asyncio.Task[None]) -> None:
        """A send nats-py finished later (``publish_eagerly``): fail the publish if it
        did not go out."""
        if sending.cancelled():  # the event loop is closing
            self._fail_unsent(entry, PublishError("the send was cancelled"))
            return
        error = sending.exception()
        if isinstance(error, Exception):
            self._fail_unsent(entry, error)

    def _fail_unsent(self, entry: _Publish, error: Exception) -> None:
        failure = self._unsent(entry, error)
        if failure is not error:
            failure.__cause__ = error
        if not entry.future.done():
            entry.future.set_exception(failure)

    async def publish_batch(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[asyncio.Future[str] | Exception]:
        """Send each payload as soon as the window has room; return, in order, each
        one's PubAck future or the error that kept it from being sent.

        When the window is full (or publishes queue), wait until half of it is free:
        one wake-up per half window rather than one per slot, and no task and no
        coroutine of ours per payload. Every ``_BATCH_FLUSH`` sends, let the event loop
        write them out."""
        results: list[asyncio.Future[str] | Exception] = []
        publish = self._owner.nats.publish
        ack_subject = self.ack_subject
        try:
            for position, data in enumerate(payloads, 1):
                if position % _BATCH_FLUSH == 0:
                    await asyncio.sleep(0)
                try:
                    while not self._free or self._queue:
                        await self.wait_for_room()
                    entry = self._make(subject, data, None)
                except Exception as error:
                    results.append(error)
                    continue
                self._free -= 1
                self._register(entry)
                nats_subject, encoder = entry.route
                try:
                    await publish(
                        nats_subject, encoder.encode(entry.guid, data), reply=ack_subject
                    )
                except Exception as error:
                    results.append(self._unsent(entry, error))
                else:
                    results.append(entry.future)
        except asyncio.CancelledError:
            for result in results:
                if isinstance(result, asyncio.Future):
                    result.cancel()  # nobody will read them
            raise
        return results

    def _register(self, entry: _Publish) -> None:
        """Number ``entry``'s send and start waiting for its PubAck (a slot is taken)."""
        self.sent = entry.sent = self.sent + 1
        guid = entry.guid
        timeout = entry.timeout
        if timeout == self.publish_timeout:
            loop = asyncio.get_running_loop()
            self._deadlines.append((loop.time() + timeout, guid))
            if self._expiry is None:
                self._expiry = loop.call_later(timeout, self._expire_due)
        else:
            entry.timer = asyncio.get_running_loop().call_later(timeout, self._expire, guid)
        self._pending[guid] = entry

    def _unsent(self, entry: _Publish, error: Exception) -> Exception:
        """Undo ``_register`` for a send that failed and free its slot; return the error
        to report (ours for what nats-py raised, else ``error`` itself)."""
        if self._pending.pop(entry.guid, None) is not None:
            if entry.timer is not None:
                entry.timer.cancel()
            self._release_later()
        failure = classify_nats_error(error, Operation.PUBLISH, f"publish to {entry.subject!r}")
        return error if failure is None else failure.error

    async def _send_queued(self) -> None:
        """Send from the head of the queue while slots are free."""
        if self._sending:
            return  # the coroutine sending already takes what was freed
        self._sending = True
        queue = self._queue
        publish = self._owner.nats.publish
        ack_subject = self.ack_subject
        try:
            while queue and self._free:
                entry = queue.popleft()
                waiter = entry.waiter
                if entry.future.done() or (waiter is not None and waiter.done()):
                    continue  # its caller was cancelled while it queued
                if not self._owner.is_connected:
                    queue.appendleft(entry)  # closing or lost: fail_all settles it
                    return
                self._free -= 1
                self._register(entry)
                nats_subject, encoder = entry.route
                try:
                    await publish(
                        nats_subject, encoder.encode(entry.guid, entry.data), reply=ack_subject
                    )
                except Exception as error:
                    failure = self._unsent(entry, error)
                    if waiter is not None:
                        entry.future.cancel()
                        if not waiter.done():
                            waiter.set_exception(failure)
                    elif not entry.future.done():
                        entry.future.set_exception(failure)
                else:
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
        finally:
            self._sending = False
        if not queue:
            self._wake_room()

    def _release_later(self) -> None:
        """Free a slot where the caller cannot send (a timer, a failed send): a task
        sends the queue's head, unless a sender is at work already."""
        self._free += 1
        if not self._queue:
            self._wake_room()
        elif not self._sending and (self._sender is None or self._sender.done()):
            self._sender = asyncio.get_running_loop().create_task(self._send_queued())

    def _wake_room(self) -> None:
        room = self._room
        if room is not None and self._free >= room[0]:
            self._room = None
            if not room[1].done():
                room[1].set_result(None)

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
        future = entry.future
        if not future.done():
            if error:
                future.set_exception(PublishError(f"the server refused the publish: {error}"))
            else:
                future.set_result(guid if entry.ack is None else entry.ack)
        self._free += 1
        if self._queue:
            await self._send_queued()
        elif self._room is not None:
            self._wake_room()

    def _expire(self, guid: str) -> None:
        entry = self._pending.pop(guid, None)
        if entry is None:
            return
        if not entry.future.done():
            entry.future.set_exception(
                PublishTimeout(
                    f"no PubAck for a publish to {entry.subject!r} within "
                    f"{entry.timeout}s (guid {guid}): {_OUTCOME_UNKNOWN}"
                )
            )
        self._release_later()

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
        """The guid of the publish that has waited longest for its PubAck, if any."""
        return next(iter(self._pending), None)

    def suspect_sent(self) -> None:
        """An outage: what was sent so far may not have reached the server, or its PubAck
        may not have reached us."""
        self._suspect_below = self.sent + 1

    async def resend_suspects(self) -> int:
        """Send again, with their guids, the waiting publishes that may have been lost;
        return how many were sent. The server takes publishes again (a PING said so)."""
        below, self._suspect_below = self._suspect_below, 0
        suspects = [entry for entry in self._pending.values() if entry.sent < below]
        nats = self._owner.nats
        resent = 0
        for entry in suspects:
            if entry.future.done():
                continue
            self.sent = entry.sent = self.sent + 1
            try:
                nats_subject, encoder = entry.route
                await nats.publish(
                    nats_subject, encoder.encode(entry.guid, entry.data), reply=self.ack_subject
                )
            except Exception as error:
                # The connection dropped again: the next recovery sends the rest.
                self._suspect_below = self.sent + 1
                logger.debug("sending again stopped: %s", error)
                break
            resent += 1
        return resent

    def fail_all(self, error: TransportError) -> None:
        """Fail every publish still waiting, for its PubAck or in the queue, with an
        error of ``error``'s type that says so (and, for those sent, that their outcome
        is unknown)."""
        pending, self._pending = self._pending, {}
        queue = list(self._queue)
        self._queue.clear()  # also for a sender between two sends
        self._deadlines.clear()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._free += len(pending)
        for guid, entry in pending.items():
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.future.done():
                entry.future.set_exception(
                    type(error)(
                        f"{error}; a publish to {entry.subject!r} (guid {guid}) was waiting "
                        f"for its PubAck: {_OUTCOME_UNKNOWN}"
                    )
                )
        for entry in queue:
            failure = type(error)(
                f"{error}; a publish to {entry.subject!r} was waiting for room under "
                "max_pub_acks_inflight and was not sent"
            )
            if entry.waiter is not None:
                entry.future.cancel()
                if not entry.waiter.done():
                    entry.waiter.set_exception(failure)
            elif not entry.future.done():
                entry.future.set_exception(failure)
        self._wake_room()
