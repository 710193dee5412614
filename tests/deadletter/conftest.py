"""A bus on each broker: in-process, JetStream (nats-server) and NATS Streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from common_events import Bus, connect

ConnectBus = Callable[..., Awaitable[Bus]]

BROKERS = ["memory", "jetstream", "stan"]


@pytest.fixture(params=BROKERS)
async def connect_bus(request: pytest.FixtureRequest) -> AsyncIterator[ConnectBus]:
    """``await connect_bus(**options)``: a new bus on this test's broker (one broker per
    test, started on first use); every bus is closed after the test."""
    made: list[Bus] = []
    url: str | None = None
    extra: dict[str, Any] = {}
    broker = request.param
    if broker == "memory":
        from common_events.transports.memory import MemoryBroker

        extra["broker"] = MemoryBroker()
        url = "memory://"
    elif broker == "jetstream":
        server = await request.getfixturevalue("nats_server_factory")()
        url = server.url
    else:
        server = request.getfixturevalue("stan_server")
        url = server.url
        extra["cluster_id"] = server.cluster_id

    async def make(**options: Any) -> Bus:
        bus = await connect(url, **{**extra, **options})
        made.append(bus)
        return bus

    make.broker = broker  # type: ignore[attr-defined]
    yield make
    for bus in reversed(made):
        await bus.close()
