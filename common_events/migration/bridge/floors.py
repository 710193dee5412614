"""Where a channel stores its next message at the earliest: the channels' last sequences,
read from the STAN monitor now and then (the reverse direction's check after a lost
publish reads the channel from there)."""

from __future__ import annotations

import asyncio
import logging

from common_events.transports.stan.monitor import MonitorError, read_monitor

logger = logging.getLogger(__name__)

FLOOR_REFRESH = 5.0
"""Seconds between two reads of the channels' last sequences (reverse direction)."""


class Floors:
    """The channels' last sequences, read from the STAN monitor now and then: each value
    is a lower bound of where any later publish is stored."""

    def __init__(self, monitor_url: str) -> None:
        self.monitor_url = monitor_url
        self._last: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def floor(self, channel: str) -> int:
        return self._last.get(channel, 0)

    def raise_to(self, channel: str, sequence: int) -> None:
        self._last[channel] = max(self._last.get(channel, 0), sequence)

    async def refresh(self, *, required: bool = False) -> None:
        try:
            snapshot = await read_monitor(self.monitor_url)
        except MonitorError as error:
            if required:
                raise MonitorError(
                    f"bridging to NATS Streaming needs the server's monitoring endpoint, "
                    f"to check after an interruption what was sent: {error} "
                    "(give it with --stan-monitor)"
                ) from None
            if not self._warned:
                self._warned = True
                logger.warning(
                    "cannot read the STAN monitor (%s): until it answers again, a message "
                    "whose publish to STAN was interrupted may be sent twice",
                    error,
                )
            return
        for channel in snapshot.channels:
            self.raise_to(channel.name, channel.last_seq)

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(FLOOR_REFRESH)
                await self.refresh()

        self._task = asyncio.create_task(loop(), name="bridge-stan-floors")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
