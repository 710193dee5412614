"""Subscriptions of a streaming session and the messages they hand to the handler.

A subscription listens on an inbox of its own, asks the server for the channel, and
hands each delivery to its handler, one at a time. Closing stops the deliveries and does
not wait for a running handler: the core's ``Listener`` drained before it closed, and a
handler still running is abandoned (its message is not acknowledged and comes back after
ack wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Protocol

from google.protobuf.message import DecodeError
from nats.aio.client import Client

from common_events.errors import SubscribeError, TransportError
from common_events.transports.nats_connection import (
    Operation,
    PayloadSubscription,
    classify_nats_error,
    map_nats_errors,
    subscribe_payloads,
    write_publish,
)
from common_events.transports.stan import protocol
from common_events.transports.stan import protocol_pb2 as pb
from common_events.transports.stan.protocol import StartPosition

logger = logging.getLogger(__name__)

_EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})

DeliveryHandler = Callable[["StanMessage"], Awaitable[None]]


class SubscriptionOwner(Protocol):
    """What a subscription needs from its session."""

    @property
    def client_id(self) -> str: ...

    @property
    def subjects(self) -> protocol.SessionSubjects: ...

    @property
    def nats(self) -> Client: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def request_timeout(self) -> float:
        """Seconds to wait for the server's answer to a request."""
        ...

    def forget(self, subscription: StanSubscription) -> None:
        """The subscription has ended; the session no longer closes it."""
        ...

    def spawn(self, awaitable: Awaitable[object]) -> None:
        """Run ``awaitable`` in the background; a failure is logged."""
        ...


class StanMessage:
    """One delivery on a subscription; satisfies ``TransportMessage``."""

    __slots__ = ("_acked", "_proto", "_subscription")

    def __init__(self, proto: pb.MsgProto, subscription: StanSubscription) -> None:
        self._proto = proto
        self._subscription = subscription
        self._acked = False

    @property
    def proto(self) -> pb.MsgProto:
        """The ``MsgProto`` as the server sent it."""
        return self._proto

    @property
    def subject(self) -> str:
        return self._proto.subject

    @property
    def data(self) -> bytes:
        return self._proto.data

    @property
    def sequence(self) -> int:
        return self._proto.sequence

    @property
    def redelivered(self) -> bool:
        return self._proto.redelivered

    @property
    def redelivery_count(self) -> int:
        """Redeliveries so far as the server counts them (0 on the first delivery).

        The server keeps this count in memory only: after a restart it starts again."""
        count = self._proto.redeliveryCount
        if self._proto.redelivered and count == 0:
            # Servers older than 0.16 flag redeliveries without counting them.
            return 1
        return count

    @property
    def delivery_count(self) -> int:
        if not self._proto.redelivered:
            return 1  # the common case, read on every delivery
        count = self.redelivery_count + 1
        skipped = self._subscription.skipped
        if skipped:
            # Sent again only because the subscription was made again meanwhile.
            count = max(1, count - skipped.get(self._proto.sequence, 0))
        return count

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self._proto.timestamp / 1_000_000_000, tz=UTC)

    @property
    def timestamp_ns(self) -> int:
        return self._proto.timestamp

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
        # The subscription's ack, written here rather than in a method of its own: one
        # coroutine less on every delivery.
        subscription = self._subscription
        if subscription._finished:
            # The server no longer matches acks to this subscription; the message comes
            # back to whoever holds the (durable) subscription next.
            return
        sequence = self._proto.sequence
        ack = subscription._ack_encoder.encode(sequence)
        if not write_publish(subscription._nc, subscription.ack_inbox, ack):
            try:
                await subscription._publish(subscription.ack_inbox, ack)
            except Exception as error:
                failure = classify_nats_error(error, Operation.ACK, f"ack on {self.subject!r}")
                if failure is None or failure.error is error:
                    raise
                raise failure.error from error
        if subscription.skipped or subscription._parked:
            subscription.acknowledged(sequence)

    async def nak(self, delay: float | None = None) -> None:
        """NATS Streaming has no negative ack: the message comes back after ack wait."""

    async def in_progress(self) -> bool:
        """NATS Streaming has no in-progress ack: unacknowledged, the message comes back
        after ack wait whatever the handler does (``False``)."""
        return self._acked

    async def park(self, delay: float) -> None:
        """Leave unacknowledged (it comes back after ack wait: there is no negative ack)
        without it holding a slot of the window: a durable subscription widens its max
        in flight while the message is parked (``StanSubscription.park``)."""
        if not self._acked:
            self._subscription.park(self._proto.sequence)

    def __repr__(self) -> str:
        return (
            f"<StanMessage subject={self.subject!r} sequence={self.sequence} "
            f"delivery_count={self.delivery_count}>"
        )


class StanSubscription:
    """A subscription of one ``StanClient``; satisfies ``TransportSubscription``."""

    def __init__(
        self,
        owner: SubscriptionOwner,
        *,
        subject: str,
        handler: DeliveryHandler,
        queue_group: str | None,
        durable_name: str | None,
        manual_acks: bool,
    ) -> None:
        self._owner = owner
        self._nc = owner.nats
        self._publish = self._nc.publish  # looked up once: every ack calls it
        self.subject = subject
        self.inbox = self._nc.new_inbox()
        self.queue_group = queue_group
        self.durable_name = durable_name
        self.manual_acks = manual_acks
        self.ack_inbox = ""
        self._ack_encoder = protocol.AckEncoder(subject)
        self._handler = handler
        self._payloads: PayloadSubscription | None = None
        self._stopped = False
        self._finished = False
        # Deliveries may arrive before the answer that carries the ack inbox.
        self._ready = asyncio.Event()
        self._is_ready = False
        # Deliveries as they came, and the one task that hands them to the handler in
        # order (``_deliver``), woken through ``_wakeup`` when it has run out.
        self._pending: deque[bytes] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self._in_handler = False
        # Stop listening once the running handler returns (set when stopping from inside
        # it, or when the session is lost and the core may still be draining).
        self._unlisten_when_idle = False
        # Set by whoever waits for the running handler to finish; the delivery path then
        # only checks an attribute.
        self._idle_waiter: asyncio.Future[None] | None = None
        # The window: max in flight as asked, as the server applies it now, and the
        # parked sequences that widen it (``park``).
        self._base_in_flight = 0
        self._in_flight = 0
        self._parked: set[int] = set()
        self._rewindowing = False
        self._rewindowed = asyncio.Event()
        self._paused = False
        # Ready, not stopped, not paused: the one check on the delivery path.
        self._flowing = False
        self.skipped: dict[int, int] = {}
        """Sequence -> deliveries left unhandled while the subscription was made again:
        the server counts them as redeliveries, ``StanMessage.delivery_count`` not."""
        self._start: tuple[StartPosition, int, int, int] = (StartPosition.NEW_ONLY, 0, 0, 30)

    @property
    def active(self) -> bool:
        return not self._stopped

    # -- starting ------------------------------------------------------------------------

    async def start(
        self,
        *,
        start_position: StartPosition,
        start_sequence: int,
        start_time_delta_ns: int,
        max_in_flight: int,
        ack_wait_seconds: int,
    ) -> None:
        """Listen on the inbox, then ask the server for the subscription."""
        what = f"subscription to {self.subject!r}"
        # Listen before asking: the server starts delivering as soon as it answers.
        # The server bounds deliveries by max in flight; never drop one client-side.
        with map_nats_errors(Operation.SUBSCRIBE, what):
            self._payloads = await subscribe_payloads(self._nc, self.inbox, self._take)
        self._delivery_task = asyncio.get_running_loop().create_task(
            self._deliver(), name=f"deliveries of {self.subject}"
        )
        self._start = (start_position, start_sequence, start_time_delta_ns, ack_wait_seconds)
        self._base_in_flight = self._in_flight = max_in_flight
        self.ack_inbox = await self._request_subscription(max_in_flight)
        self._is_ready = True
        self._flowing = not (self._stopped or self._paused)
        self._ready.set()

    async def _request_subscription(self, max_in_flight: int, *, again: bool = False) -> str:
        """Ask the server for the subscription on our inbox; its ack inbox. A first
        request that fails drops the subscription; one made ``again`` leaves it be."""
        owner = self._owner
        what = f"subscription to {self.subject!r}"
        start_position, start_sequence, start_time_delta_ns, ack_wait_seconds = self._start
        request = protocol.encode_subscription_request(
            client_id=owner.client_id,
            subject=self.subject,
            inbox=self.inbox,
            queue_group=self.queue_group,
            durable_name=self.durable_name,
            max_in_flight=max_in_flight,
            ack_wait_seconds=ack_wait_seconds,
            start_position=start_position,
            start_sequence=start_sequence,
            start_time_delta_ns=start_time_delta_ns,
        )
        try:
            reply = await self._nc.request(
                owner.subjects.sub_requests, request, timeout=owner.request_timeout
            )
            response = protocol.decode_subscription_response(reply.data)
        except Exception as error:
            failure = classify_nats_error(error, Operation.SUBSCRIBE, what)
            if failure is None and not isinstance(error, protocol.ProtocolError):
                raise
            if not again:
                await self.drop()
            if isinstance(error, TimeoutError):
                # The server may have made the subscription after all; close it (best
                # effort) so it does not linger. The server finds it by inbox.
                await self._request_end(remove=False, ack_inbox=self.inbox, quiet=True)
            text = str(failure.error) if failure is not None else f"{what}: {error}"
            raise SubscribeError(text) from error
        if response.error:
            if not again:
                await self.drop()
            raise SubscribeError(
                f"the server refused the subscription to {self.subject!r}: {response.error}"
            )
        return response.ack_inbox

    # -- parked messages ---------------------------------------------------------------

    def park(self, sequence: int) -> None:
        """``sequence`` stays unacknowledged until its dead-letter record can be stored.

        The server counts it against max in flight until it is acknowledged, and has no
        way to change a live subscription's max in flight. So a durable subscription is
        closed and made again at once with a wider window (base + twice the parked, so
        that the next parked messages fit without another round), and back at its base
        once nothing is parked. The durable keeps its position and its unacknowledged
        messages; the server sends those again when it resumes. A subscription that is
        not durable cannot be made again without losing its place: its parked messages
        hold their slots.
        """
        if sequence in self._parked:
            return
        self._parked.add(sequence)
        if self.durable_name is None:
            logger.warning(
                "%s #%d holds one of this subscription's %d slots until its dead-letter "
                "record is stored: only a durable subscription can widen its window",
                self.subject,
                sequence,
                self._in_flight,
            )
            return
        self._rewindow()

    def _wanted_window(self) -> int | None:
        """The max in flight to make the subscription again with; ``None``: keep it.

        Wider once the parked no longer fit beside the base (twice the parked, so that
        the next ones fit without another round); back to the base once none is parked.
        """
        if self._parked:
            if self._base_in_flight + len(self._parked) <= self._in_flight:
                return None
            return self._base_in_flight + 2 * len(self._parked)
        return None if self._in_flight == self._base_in_flight else self._base_in_flight

    def _rewindow(self) -> None:
        if self._rewindowing or self._stopped or self.durable_name is None:
            return
        if self._wanted_window() is None:
            return
        self._rewindowing = True
        self._rewindowed.clear()
        self._owner.spawn(self._resubscribe())

    async def _resubscribe(self) -> None:
        try:
            while not self._stopped:
                wanted = self._wanted_window()
                if wanted is None:
                    return
                # Deliveries arriving meanwhile are left unacknowledged: the server
                # sends them again when the durable resumes.
                self._paused = True
                self._flowing = False
                await self.wait_idle()
                if self._stopped:
                    return  # closed from its handler meanwhile: nothing to make again
                await self._request_end(remove=False, ack_inbox=self.ack_inbox, quiet=False)
                self.ack_inbox = await self._subscribe_again(wanted)
                logger.log(
                    logging.WARNING if wanted > self._in_flight else logging.INFO,
                    "%s: %d message(s) wait for their dead-letter record to be stored; "
                    "subscription made again with max in flight %d -> %d",
                    self.subject,
                    len(self._parked),
                    self._in_flight,
                    wanted,
                )
                self._in_flight = wanted
                self._paused = False
                self._flowing = self._is_ready and not self._stopped
        except Exception as error:
            # Either the close failed, and the server goes on with the old window, or
            # the session ended (or the subscription closed) while it was made again.
            logger.error(
                "could not make the subscription to %s again with a new window: %s",
                self.subject,
                error,
            )
        finally:
            self._paused = False
            self._flowing = self._is_ready and not self._stopped
            self._rewindowing = False
            self._rewindowed.set()

    async def _subscribe_again(self, max_in_flight: int) -> str:
        """After the close: until the server has the subscription again (or the session
        ends), so that a closed durable is never left without its listener."""
        while True:
            try:
                return await self._request_subscription(max_in_flight, again=True)
            except SubscribeError as error:
                if self._stopped or not self._owner.is_connected:
                    raise
                logger.warning("subscribing to %s again: %s; trying again", self.subject, error)
                await asyncio.sleep(0.5)

    # -- delivering ----------------------------------------------------------------------

    def _take(self, data: bytes) -> None:
        # Called in nats-py's reading task with each delivery's payload (``direct``).
        self._pending.append(data)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    async def _deliver(self) -> None:
        # One delivery at a time, in order: a subscription's handler never runs twice
        # at once. Runs until the subscription stops listening (``_unlisten``).
        pending = self._pending
        loop = asyncio.get_running_loop()
        while True:
            if not pending:
                self._wakeup = wakeup = loop.create_future()
                await wakeup
                continue
            try:
                await self._on_delivery(pending.popleft())
            except Exception as error:
                # The handler's own errors are caught in _on_delivery; this is its ack
                # failing (the connection went away): the server sends the message again.
                logger.warning(
                    "delivery on %s not acknowledged: %s; it comes back after ack wait",
                    self.subject,
                    error,
                )

    async def _on_delivery(self, data: bytes) -> None:
        if not self._flowing:
            if not self._is_ready:
                await self._ready.wait()
            if self._stopped:
                return
        try:
            # protocol.decode_msg without its frame: this runs on every delivery.
            proto = pb.MsgProto.FromString(data)
        except DecodeError:
            logger.warning("dropping a delivery on %s that is not a MsgProto", self.subject)
            return
        if not self._flowing and self._paused:
            # Left unacknowledged: the server sends it again when the durable resumes.
            if proto.sequence not in self._parked:
                skipped = self.skipped
                skipped[proto.sequence] = skipped.get(proto.sequence, 0) + 1
                if len(skipped) > 4 * self._in_flight:
                    # Sent to another member of the group meanwhile: forget the oldest.
                    for sequence in list(skipped)[: len(skipped) // 2]:
                        del skipped[sequence]
            return
        message = StanMessage(proto, self)
        self._in_handler = True
        try:
            await self._handler(message)
        except Exception:
            # The one guard: the subscription survives a buggy handler. Acking or
            # retrying is the core's business, not this transport's.
            logger.exception(
                "handler for %s raised on sequence %d; the message is not acknowledged "
                "and comes back after ack wait",
                self.subject,
                message.sequence,
            )
        else:
            if not self.manual_acks:
                await message.ack()
        finally:
            self._in_handler = False
            if self._unlisten_when_idle:
                self._unlisten_when_idle = False
                # Unlistening cancels the delivery task, which runs this code.
                self._owner.spawn(self._unlisten())
            waiter = self._idle_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def acknowledged(self, sequence: int) -> None:
        """``StanMessage.ack`` has sent the ack of ``sequence``: no longer skipped or
        parked; back to the base window once nothing is parked."""
        self.skipped.pop(sequence, None)
        if self._parked and sequence in self._parked:
            self._parked.discard(sequence)
            if not self._parked:
                self._rewindow()

    async def wait_idle(self) -> None:
        """Wait until no handler of this subscription runs."""
        if not self._in_handler:
            return
        if self._idle_waiter is None or self._idle_waiter.done():
            self._idle_waiter = asyncio.get_running_loop().create_future()
        await self._idle_waiter

    # -- ending --------------------------------------------------------------------------

    async def _stop(self, *, abandon_running: bool) -> None:
        """Stop handing over deliveries.

        ``abandon_running``: stop listening now, which cancels a running handler (its
        message comes back after ack wait). Otherwise, and always when called from the
        handler itself, stop listening once it returns.
        """
        if self._stopped:
            return
        self._stopped = True
        self._flowing = False
        # Wake deliveries still waiting for the ack inbox: they see the stop and go.
        self._ready.set()
        if self._in_handler:
            if not abandon_running or self._delivery_task is asyncio.current_task():
                self._unlisten_when_idle = True
                return
            logger.info(
                "handler for %s still running; abandoned, its message comes back after "
                "ack wait",
                self.subject,
            )
        await self._unlisten()

    async def _unlisten(self) -> None:
        # Deliveries not yet handed over are left unacknowledged: they come back.
        task = self._delivery_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._pending.clear()
        payloads, self._payloads = self._payloads, None
        if payloads is not None:
            # Fails harmlessly when the NATS connection is closed already.
            with contextlib.suppress(TransportError), map_nats_errors(
                Operation.CLOSE, f"unsubscribe from {self.inbox}"
            ):
                await payloads.unsubscribe()

    async def drop(self) -> None:
        """Forget the subscription without asking the streaming server (the session is
        lost, or the server refused it). A running handler may finish; its ack is not
        sent."""
        self._finished = True
        await self._stop(abandon_running=False)

    async def close(self) -> None:
        """Stop receiving; a durable subscription survives and resumes later."""
        await self._finish(remove=False)

    async def unsubscribe(self) -> None:
        """Stop receiving and remove the subscription (and its durable state)."""
        await self._finish(remove=True)

    async def _finish(self, *, remove: bool) -> None:
        if self._finished:
            return
        await self._stop(abandon_running=True)
        if self._rewindowing and self._delivery_task is not asyncio.current_task():
            # Being made again: close what the server has once it has it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rewindowed.wait(), 3 * self._owner.request_timeout)
        self._finished = True
        self._owner.forget(self)
        if self._owner.is_connected:
            # Closing the session closes the subscription on the server as well.
            await self._request_end(remove=remove, ack_inbox=self.ack_inbox, quiet=False)

    async def _request_end(self, *, remove: bool, ack_inbox: str, quiet: bool) -> None:
        owner = self._owner
        subjects = owner.subjects
        target = subjects.unsub_requests if remove else subjects.sub_close_requests
        request = protocol.encode_unsubscribe_request(
            client_id=owner.client_id,
            subject=self.subject,
            ack_inbox=ack_inbox,
            durable_name=self.durable_name,
        )
        what = f"{'unsubscribe' if remove else 'subscription close'} of {self.subject!r}"
        if quiet:
            with contextlib.suppress(TransportError), map_nats_errors(Operation.REQUEST, what):
                await self._nc.publish(target, request)
            return
        try:
            with map_nats_errors(Operation.REQUEST, what):
                reply = await self._nc.request(target, request, timeout=owner.request_timeout)
            error = protocol.decode_subscription_response(reply.data).error
        except protocol.ProtocolError as exc:
            raise TransportError(f"{what} failed: {exc}") from exc
        if error:
            raise TransportError(f"the server refused the {what}: {error}")

    def __repr__(self) -> str:
        state = "active" if self.active else "stopped"
        return (
            f"<StanSubscription {self.subject!r} queue_group={self.queue_group!r} "
            f"durable_name={self.durable_name!r} {state}>"
        )
