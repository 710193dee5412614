"""A broker outage logs one line per change of state (lost, still reconnecting after
1, 2, 4, 8... attempts, back), not one per reconnect attempt."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.nats_connection import (
    Connected,
    NatsOptions,
    Reconnecting,
    open_nats,
    parse_servers,
)

ServerFactory = Callable[..., Awaitable[EmbeddedNatsServer]]
# The connection layer: the connection and its outage log both log under it.
LOGGER = "common_events.transports.nats_connection"


class Watch(logging.Handler):
    """Keeps the records of the connection's logger and wakes a waiter on each one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.changed = asyncio.Condition()
        self.loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.loop.call_soon(lambda: asyncio.ensure_future(self._notify()))

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool], within: float = 15) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)

    def lines(self, level: int = logging.INFO) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
async def watch() -> AsyncIterator[Watch]:
    handler = Watch()
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def test_an_outage_logs_each_change_of_state_once(
    nats_server_factory: ServerFactory, watch: Watch
) -> None:
    server = await nats_server_factory()
    servers = parse_servers(server.url, schemes={"nats": "nats"})
    connection = await open_nats(
        servers, NatsOptions(name="payments", reconnect_time_wait=0.1, connect_timeout=0.5)
    )
    try:
        await server.stop()
        await asyncio.wait_for(connection.wait_for_state(Reconnecting), 15)
        await watch.until(lambda: any("attempt 16 failed" in line for line in watch.lines()))
        await server.start()
        await asyncio.wait_for(connection.wait_for_state(Connected), 15)
        await watch.until(lambda: any("reconnected" in line for line in watch.lines()))
    finally:
        await connection.close()

    lines = watch.lines()
    lost, *retrying, back = lines
    assert lost.startswith("payments lost its NATS connection (disconnected: ")
    assert "reconnecting every 0.1s" in lost
    attempts = [int(re.search(r"attempt (\d+) failed", line)[1]) for line in retrying]  # type: ignore[index]
    # Attempts 1, 2, 4, 8, 16 (and any whose reason changed), never each one.
    assert attempts[:5] == [1, 2, 4, 8, 16]
    assert len(attempts) < 8
    quiet = [r for r in watch.records if r.levelno == logging.DEBUG and "attempt" in r.getMessage()]
    assert len(quiet) >= 11
    assert re.match(
        r"payments reconnected to NATS at 127\.0\.0\.1:\d+ after \d+\.\ds \(\d+ failed attempt",
        back,
    )
