"""How many messages the server holds, read from its monitoring endpoint."""

from __future__ import annotations

import asyncio

from tests.fixtures.stan import StanServer


def stored(server: StanServer) -> int:
    return int(server.monitor("/streaming/serverz")["total_msgs"])


async def wait_stored(server: StanServer, count: int, within: float = 5) -> None:
    """Poll the monitoring endpoint until the server holds ``count`` messages."""
    async with asyncio.timeout(within):
        while True:
            if await asyncio.to_thread(stored, server) >= count:
                return
            await asyncio.sleep(0.02)
