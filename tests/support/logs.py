"""A log handler of a test's own, attached for a block."""

from __future__ import annotations

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
