"""What both directions keep per subject: its counts, whether it is stopping, whether a
message is in hand, and the pause before trying again."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common_events.migration.bridge.runner import Bridge

logger = logging.getLogger(__name__)

RETRY_DELAY = 0.5


@dataclass
class DirectionStats:
    forwarded: int = 0
    skipped: int = 0
    """Already on the other side (a redelivery, or a copy from the other side)."""


class Channel:
    def __init__(self, bridge: Bridge, subject: str) -> None:
        self.bridge = bridge
        self.subject = subject
        self.stats = DirectionStats()
        self.stopping = False
        self.idle = asyncio.Event()
        self.idle.set()

    async def close(self) -> None:
        raise NotImplementedError

    async def _wait_retry(self) -> bool:
        """Wait before trying again; ``False`` when stopping instead."""
        if self.stopping:
            return False
        await asyncio.sleep(RETRY_DELAY)
        return not self.stopping
