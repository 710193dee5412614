"""What both directions keep per subject: its counts (and its metrics, when the bridge
has some), whether it is stopping, whether a message is in hand, and the pause before
trying again."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common_events.migration.bridge.metrics import ChannelSeries
    from common_events.migration.bridge.runner import Bridge

logger = logging.getLogger(__name__)

RETRY_DELAY = 0.5


@dataclass
class DirectionStats:
    forwarded: int = 0
    skipped: int = 0
    """Already on the other side (a redelivery, or a copy from the other side)."""


class Channel:
    direction: str
    """``to_jetstream`` or ``to_stan``, as the metrics label it."""

    def __init__(self, bridge: Bridge, subject: str) -> None:
        self.bridge = bridge
        self.subject = subject
        self.stats = DirectionStats()
        self.series: ChannelSeries | None = (
            bridge.metrics.channel(self.direction, subject) if bridge.metrics else None
        )
        self.stopping = False
        self.idle = asyncio.Event()
        self.idle.set()

    async def close(self) -> None:
        raise NotImplementedError

    def _resumes_after(self, sequence: int) -> None:
        if self.series is not None:
            self.series.resumes_after(sequence)

    def _forwarded(self, sequence: int, stored_at: float) -> None:
        """Confirmed on the other side; stored at ``stored_at`` (Unix seconds) on this."""
        self.stats.forwarded += 1
        if self.series is not None:
            self.series.forwarded(sequence, stored_at)

    def _already_there(self, sequence: int) -> None:
        self.stats.skipped += 1
        if self.series is not None:
            self.series.already_there(sequence)

    def _failed(self, step: str) -> None:
        """``publish``, ``ack`` or ``ledger`` failed (the metrics count it)."""
        if self.series is not None:
            self.series.failed(step)

    async def _wait_retry(self) -> bool:
        """Wait before trying again; ``False`` when stopping instead."""
        if self.stopping:
            return False
        await asyncio.sleep(RETRY_DELAY)
        return not self.stopping
