"""A subscriber's handle on the in-memory broker: ``close`` keeps a durable's state,
``unsubscribe`` drops it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common_events.transports.memory.broker import MemoryBroker
    from common_events.transports.memory.state import _Member, _SubscriptionState


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
