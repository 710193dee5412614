"""The transport interface: bytes in, bytes out, on subjects.

A transport knows nothing of pydantic or of the events. The core (``Publisher``,
``Listener``) sits on top of it and never branches on which transport is underneath.
Every transport passes the conformance suite ``common_events.testing.conformance``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, NoReturn, Protocol, runtime_checkable

from common_events.errors import ConnectionLost


@dataclass(frozen=True, slots=True)
class PublishAck:
    """What the broker said when it confirmed a publish.

    ``sequence`` is the stored sequence where the broker tells it (memory, JetStream);
    ``guid`` is the publish id where it has one (NATS Streaming's PubAck guid).
    """

    subject: str
    sequence: int | None = None
    guid: str | None = None
    stream: str | None = None
    duplicate: bool = False


class PublishConfirmation(asyncio.Future[PublishAck], Coroutine[Any, Any, PublishAck]):
    """A publish under way: an asyncio future of its ``PublishAck``.

    ``Publisher.publish`` sends (or queues) the event when it is called and returns this;
    awaiting it waits for the broker's confirmation, or raises why there is none.
    ``asyncio.gather``, ``wait``, ``wait_for`` and ``shield`` take it as the future it is,
    with no task of their own (a task per publish would cost as much as the publish).
    It is also a coroutine, so that ``asyncio.create_task`` and ``TaskGroup.create_task``
    take it, as they took ``publish`` when it was a coroutine function.

    Cancelling it stops waiting: a publish still queued is not sent; one already sent
    may be stored or not.
    """

    __slots__ = ()

    # The coroutine protocol, as asyncio's own future iterator behaves: a task that
    # drives this coroutine waits on the future itself, then takes its outcome.
    def send(self, value: None) -> Any:
        if not self.done():
            self._asyncio_future_blocking = True
            return self
        raise StopIteration(self.result())

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> NoReturn:
        # What a coroutine that does not catch it does: let it out.
        if isinstance(typ, BaseException):
            raise typ
        raise val if isinstance(val, BaseException) else typ()

    def close(self) -> None:
        # The publish is already under way; closing the coroutine does not undo it.
        return None


def failed_confirmation(error: BaseException) -> Coroutine[Any, Any, PublishAck]:
    """What raises ``error`` when awaited (a publish that could not start): a
    ``PublishConfirmation``, or, called outside a running event loop (where no future
    can be made), a coroutine."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _raise(error)
    confirmation = PublishConfirmation(loop=loop)
    confirmation.set_exception(error)
    return confirmation


async def _raise(error: BaseException) -> PublishAck:
    raise error


@dataclass(frozen=True, slots=True)
class SubscriptionOptions:
    """How a subscription is made; the names follow the reference services' options.

    ``ack_wait`` and ``nak`` delays are in seconds. ``durable_name`` of ``None`` makes a
    subscription that the broker forgets when it closes. ``queue_group`` of ``None`` means
    every subscriber gets every message.
    """

    queue_group: str | None = None
    durable_name: str | None = None
    deliver_all_available: bool = True
    ack_wait: float = 5.0
    max_in_flight: int = 16
    max_deliveries: int | None = None
    """Upper bound the broker itself enforces where it can (JetStream ``max_deliver``).
    The core enforces it everywhere; a transport may ignore it."""


@runtime_checkable
class TransportMessage(Protocol):
    """One delivery of a stored message."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def sequence(self) -> int:
        """The broker's sequence of the stored message (same on every redelivery)."""
        ...

    @property
    def redelivered(self) -> bool: ...

    @property
    def delivery_count(self) -> int:
        """1 on the first delivery, 2 on the first redelivery, and so on."""
        ...

    @property
    def timestamp(self) -> datetime:
        """When the broker stored the message (timezone-aware, UTC)."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Transport headers; empty where the transport has none (memory, STAN)."""
        ...

    async def ack(self) -> None:
        """Acknowledge; idempotent."""
        ...

    async def nak(self, delay: float | None = None) -> None:
        """Ask for redelivery after ``delay`` seconds (``None``: as soon as possible).

        Where the broker has no negative ack (NATS Streaming) this does nothing and the
        message comes back after ``ack_wait``.
        """
        ...

    async def in_progress(self) -> bool:
        """Tell the broker the handler is still working, so ``ack_wait`` starts again
        and the message is not delivered again meanwhile (memory; JetStream's
        in-progress ack). Returns whether redelivery is held off: ``True`` once the
        broker was told (or the message is settled already); ``False`` where the broker
        has no such message (NATS Streaming) or it is too late (the message was handed
        to someone else already).
        """
        ...


@runtime_checkable
class ParkableMessage(Protocol):
    """A delivery the broker can hand back without it holding an in-flight slot.

    Optional: the core parks a message whose dead-letter record cannot be stored (it
    must be neither acknowledged nor lost, nor block the messages behind it) with
    ``park`` where the message has it, and with ``nak`` otherwise. JetStream widens the
    consumer's window while the message is parked; memory frees the slot on ``nak``.
    """

    async def park(self, delay: float) -> None:
        """Hand back for ``delay`` seconds, not counted against ``max_in_flight``."""
        ...


@runtime_checkable
class ImmediatePublisher(Protocol):
    """A transport that can start a publish without awaiting anything.

    Optional: where a transport has it and no middleware sees publishes,
    ``Publisher.publish`` returns its confirmation as it is, with no task per publish;
    otherwise it returns the coroutine of ``publish``. ``publish_now`` sends at once (or
    queues within the transport's own bound) and may raise, before sending, what says
    it cannot.
    """

    def publish_now(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishConfirmation: ...


ConnectionLostCallback = Callable[[ConnectionLost], object]
"""Told once that a transport's connection is gone for good (not after ``close()``)."""

MessageHandler = Callable[[TransportMessage], Awaitable[None]]
"""Called once per delivery. A transport awaits it before handing the same subscription
its next message, so one subscription's handler never runs twice at once."""


@runtime_checkable
class TransportSubscription(Protocol):
    @property
    def subject(self) -> str: ...

    async def close(self) -> None:
        """Stop receiving; a durable subscription survives and resumes later."""
        ...

    async def unsubscribe(self) -> None:
        """Stop receiving and remove the durable state from the broker."""
        ...


@runtime_checkable
class Transport(Protocol):
    """A connection to a broker."""

    @property
    def url(self) -> str: ...

    @property
    def connected(self) -> bool:
        """Calls reach the broker now: ``False`` while connecting, while reconnecting
        after an outage, and once lost or closed. Health checks read it."""
        ...

    @property
    def max_payload(self) -> int | None:
        """The largest message the server takes, in bytes (payload and headers, as NATS
        counts them), as it told at connect; ``None`` where no limit is known. The core
        keeps every dead-letter message under it."""
        ...

    @property
    def carries_headers(self) -> bool:
        """Whether headers given to ``publish()`` reach the subscribers (memory,
        JetStream); NATS Streaming has none."""
        ...

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        """Send and wait for the broker's confirmation; raise ``PublishError`` on failure."""
        ...

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        """Publish every payload with many confirmations outstanding at once (bounded by
        the transport's own in-flight limit). One result per payload, in order: its
        confirmation, or the error that kept it from being confirmed."""
        ...

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription: ...

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        """Call ``callback`` once if the connection is lost for good: the broker forgot
        this client, or no server could be reached again. Never after ``close()``."""
        ...

    async def close(self) -> None:
        """Close every subscription (durables survive) and the connection; idempotent."""
        ...
