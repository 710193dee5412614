"""Finding broker binaries and free loopback ports for test fixtures.

A fixture whose binary is missing skips with a reason that says how to get it, except
under ``COMMON_EVENTS_REQUIRE_SERVERS=1`` (set by ``.ci/run``), where it fails: in CI
nothing may skip quietly.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest


def servers_required() -> bool:
    return os.environ.get("COMMON_EVENTS_REQUIRE_SERVERS", "") not in ("", "0", "false")


def missing(reason: str) -> None:
    """Skip (or fail, when servers are required) with ``reason``."""
    if servers_required():
        pytest.fail(f"{reason} (COMMON_EVENTS_REQUIRE_SERVERS=1 forbids skipping)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def go_bin_dir() -> Path | None:
    gopath = os.environ.get("GOPATH")
    if not gopath and shutil.which("go"):
        try:
            gopath = subprocess.run(
                ["go", "env", "GOPATH"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            gopath = None
    return Path(gopath) / "bin" if gopath else None
