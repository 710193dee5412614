"""Collecting deliveries in tests and waiting on them with timeouts (never bare sleeps)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from common_events.transports.base import Transport, TransportMessage

__all__ = ["Collector", "TransportFactory"]

logger = logging.getLogger(__name__)

TransportFactory = Callable[[], Awaitable[Transport]]
"""Makes a new connected transport. Every transport one factory makes talks to the same
broker, so two of them behave like two services; the fixture that yields the factory
closes them all after the test."""


class Collector:
    """A raw handler that records every delivery and optionally acks it."""

    def __init__(self, *, ack: bool = True) -> None:
        self.ack = ack
        self.messages: list[TransportMessage] = []
        self._changed = asyncio.Condition()

    async def __call__(self, message: TransportMessage) -> None:
        if self.ack:
            await message.ack()
        async with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    @property
    def payloads(self) -> list[bytes]:
        return [m.data for m in self.messages]

    async def wait_until(
        self, predicate: Callable[[list[TransportMessage]], bool], within: float = 10.0
    ) -> list[TransportMessage]:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self.messages))
        return self.messages

    async def wait_for_count(self, count: int, within: float = 10.0) -> list[TransportMessage]:
        """Wait until at least ``count`` deliveries arrived; ``TimeoutError`` after
        ``within`` seconds."""
        return await self.wait_until(lambda messages: len(messages) >= count, within)
