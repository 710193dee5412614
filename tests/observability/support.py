"""Waiting in tests: for a condition that has no event to wait on, with a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    """Return once ``check()`` is true; ``TimeoutError`` after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - a span exporter or a registry has no event
            await asyncio.sleep(0.01)
