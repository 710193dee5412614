"""What the dead-letter tests share: poison payloads, a listener that records what it
handled, a reader of a dead-letter subject, and a transport whose dead-letter publishes
fail on demand (a fault the test controls, in front of a real broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from common_events import Bus, Listener, Message, TicketCreatedEvent
from common_events.core.codec import DEAD_LETTER_PREFIX, dead_letter_subject
from common_events.errors import PublishError
from common_events.transports.base import (
    ConnectionLostCallback,
    MessageHandler,
    PublishAck,
    SubscriptionOptions,
    Transport,
    TransportMessage,
    TransportSubscription,
)

SUBJECT = "ticket:created"
DEAD_LETTERS = dead_letter_subject(SUBJECT)
KB = 1000


def binary_poison(size: int, seed: int = 0) -> bytes:
    """Not UTF-8 (every byte value): a record would carry it base64-encoded, 4/3 larger."""
    block = bytes((seed + index) % 256 for index in range(256))
    return (block * (size // 256 + 1))[:size]


def escaped_poison(size: int, seed: int = 0) -> bytes:
    """UTF-8 but invalid JSON, all quotes, backslashes and control characters: JSON
    escaping makes it 2 to 6 times larger in a record."""
    block = bytes([ord('"'), ord("\\"), 1 + seed % 30, 0x1F])
    return (block * (size // len(block) + 1))[:size]


def plain_poison(size: int) -> bytes:
    """Plain text, not JSON: its record is barely larger than itself."""
    return (b"not json " * (size // 9 + 1))[:size]


def poison_flood(count: int) -> list[bytes]:
    """``count`` poison payloads of 300 to 900 KB, binary and escape-heavy in turn."""
    sizes = [300 * KB + (600 * KB * index) // max(count - 1, 1) for index in range(count)]
    return [
        binary_poison(size, index) if index % 2 == 0 else escaped_poison(size, index)
        for index, size in enumerate(sizes)
    ]


def ticket(number: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"t{number}", version=0, title="Concert", price=20, user_id="u1")


class Recording(Listener[TicketCreatedEvent]):
    """Acknowledges every valid event and records which; counts every delivery."""

    queue_group = "dead-letter-tests"
    ack_wait = 2.0
    max_in_flight = 16
    max_deliveries = 3

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.handled: list[str] = []
        self.deliveries: dict[int, int] = {}
        self.outcomes: list[Any] = []
        self.changed = asyncio.Event()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.handled.append(event.id)
        await msg.ack()

    async def handle_delivery(self, raw: TransportMessage) -> Any:
        self.deliveries[raw.sequence] = raw.delivery_count
        outcome = await super().handle_delivery(raw)
        self.outcomes.append(outcome)
        self.changed.set()
        return outcome

    async def wait_until(self, check: Any, within: float) -> None:
        async with asyncio.timeout(within):
            while not check():
                self.changed.clear()
                await self.changed.wait()


class DeadLetterReader:
    """Every message that arrives on a dead-letter subject, data and headers."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, dict[str, str]]] = []
        self.changed = asyncio.Event()

    async def __call__(self, message: TransportMessage) -> None:
        self.messages.append((message.data, dict(message.headers)))
        await message.ack()
        self.changed.set()

    async def start(self, bus: Bus, subject: str = DEAD_LETTERS) -> None:
        await bus.subscribe(
            subject, self, SubscriptionOptions(durable_name="dead-letter-reader", ack_wait=10)
        )

    async def wait_for(self, count: int, within: float) -> None:
        async with asyncio.timeout(within):
            while len(self.messages) < count:
                self.changed.clear()
                await self.changed.wait()


async def publish_raw(bus: Bus, payloads: Sequence[bytes], subject: str = SUBJECT) -> None:
    for payload in payloads:
        await bus.publish(subject, payload)


class FailingDeadLetters:
    """A transport that refuses every dead-letter publish while ``failing`` is set, as a
    broker does that refuses the dead-letter subject; everything else goes through."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.failing = True
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def url(self) -> str:
        return self.inner.url

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        if self.failing and subject.startswith(DEAD_LETTER_PREFIX):
            self.refused += 1
            raise PublishError(f"refused by the test: {subject}")
        return await self.inner.publish(subject, data, headers)

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        return await self.inner.publish_many(subject, payloads)

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription:
        return await self.inner.subscribe(subject, handler, options)

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        self.inner.add_connection_lost_callback(callback)

    async def close(self) -> None:
        await self.inner.close()
