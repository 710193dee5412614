"""Loopback ports for throwaway servers, and the probe that asks one over HTTP if it is up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

__all__ = ["free_loopback_port", "http_status"]

logger = logging.getLogger(__name__)

# Seconds a loopback server has to accept and answer; anything slower counts as not up.
_ANSWER_WITHIN = 1.0


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def http_status(port: int, path: str) -> int | None:
    """Status code of a plain HTTP GET on loopback, or ``None`` if nothing answers yet."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=_ANSWER_WITHIN
        )
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=_ANSWER_WITHIN)
        parts = status_line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
