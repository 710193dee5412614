"""The ``Transport`` on an in-memory broker, and ``connect("memory://")``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common_events.errors import ConfigurationError, TransportClosed
from common_events.transports.base import (
    ConnectionLostCallback,
    MessageHandler,
    PublishAck,
    PublishConfirmation,
    SubscriptionOptions,
    TransportSubscription,
)
from common_events.transports.batch import publish_with_workers
from common_events.transports.memory.broker import MemoryBroker
from common_events.transports.memory.subscription import MemorySubscription


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

    def publish_now(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishConfirmation:
        """Store now; the confirmation is done when returned (``ImmediatePublisher``)."""
        if self._closed:
            self._check_open()  # raises
        sequence = self.broker.publish(subject, data, headers)
        # Bound to the running loop (this is called from a coroutine). Made without the
        # keyword, the ack positional: a few per cent of an in-memory publish less.
        confirmation = PublishConfirmation()
        confirmation.set_result(PublishAck(subject, sequence))
        return confirmation

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
