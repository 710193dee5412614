"""The JetStream transport connected directly, as the core connects it: with the
stream's subjects (every event subject and its dead-letter subject)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from common_events.core.codec import stream_subjects
from common_events.transports.jetstream import JetStreamTransport, connect

Connect = Callable[..., Awaitable[JetStreamTransport]]


@pytest.fixture
async def jetstream_connect() -> AsyncIterator[Connect]:
    """``connect()`` with ``subjects=stream_subjects()`` unless a test passes its own
    (``subjects=None`` connects without any); every transport is closed after the test."""
    made: list[JetStreamTransport] = []

    async def make(url: str, **options: Any) -> JetStreamTransport:
        options.setdefault("subjects", stream_subjects())
        transport = await connect(url, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()
