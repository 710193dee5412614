"""Log handlers of a test's own, attached for a block."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

H = TypeVar("H", bound=logging.Handler)


@contextmanager
def attached(handler: H, logger: str = "", level: int = logging.DEBUG) -> Iterator[H]:
    """``handler`` on ``logger`` (the root by default), which passes ``level`` and above
    for the block; the logger's level as it was afterwards."""
    target = logging.getLogger(logger or None)
    before = target.level
    target.addHandler(handler)
    target.setLevel(level)
    try:
        yield handler
    finally:
        target.removeHandler(handler)
        target.setLevel(before)


class LogLines(logging.Handler):
    """The formatted messages of the records it is handed, in order; a test waits for
    one with ``wait_for`` instead of polling."""

    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.lines: list[str] = []
        self._arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self._arrived.set()

    def with_text(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def wait_for(self, text: str, within: float) -> None:
        """Until a line holds ``text``; ``TimeoutError`` after ``within`` seconds."""
        async with asyncio.timeout(within):
            while not self.with_text(text):
                self._arrived.clear()
                await self._arrived.wait()
