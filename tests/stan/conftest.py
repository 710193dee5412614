"""What the NATS Streaming tests share: transports closed after each test, and a TCP
proxy in front of the server that a test can cut."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common_events.transports.stan import StanTransport
from tests.faults.proxy import TcpProxy
from tests.fixtures.stan import StanServer


@pytest.fixture
async def transports() -> AsyncIterator[list[StanTransport]]:
    """Append every transport a test opens; each is closed after the test."""
    made: list[StanTransport] = []
    yield made
    for transport in made:
        await transport.close()


@pytest.fixture
async def proxy(stan_server: StanServer) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(stan_server.port) as proxy:
        yield proxy
