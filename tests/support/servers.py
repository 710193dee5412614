"""Skipping (or failing, in CI) where a broker binary is missing.

A fixture whose binary is missing skips with a reason that says how to get it, except
under ``COMMON_EVENTS_REQUIRE_SERVERS=1`` (set by ``.ci/run``), where it fails: in CI
nothing may skip quietly. The servers themselves are ``common_events.testing.servers``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from common_events.testing.servers import ServerNotFound, free_loopback_port, go_bin_dir

__all__ = ["free_port", "go_bin_dir", "missing", "require_binary", "servers_required"]

free_port = free_loopback_port


def servers_required() -> bool:
    return os.environ.get("COMMON_EVENTS_REQUIRE_SERVERS", "") not in ("", "0", "false")


def missing(reason: str) -> None:
    """Skip (or fail, when servers are required) with ``reason``."""
    if servers_required():
        pytest.fail(f"{reason} (COMMON_EVENTS_REQUIRE_SERVERS=1 forbids skipping)")
    pytest.skip(reason)


def require_binary(find: Callable[[], Path]) -> Path:
    """``find()``'s binary, or skip (fail in CI) with the reason it gives."""
    try:
        return find()
    except ServerNotFound as error:
        missing(str(error))
        raise  # pragma: no cover - missing() raises
