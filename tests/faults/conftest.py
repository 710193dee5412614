"""Fault-injection scenarios against real servers: network cuts through a TCP proxy,
server crashes, slow consumers, clusters losing their leader.

The fast set runs with the rest of the tests; the scenarios marked ``faults_full`` (the
long ones) run only with ``COMMON_EVENTS_FAULTS=full`` (``make faults``). Every scenario
prints its counts and recovery times (``-s``), and the terminal summary lists them all.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from common_events.testing.servers import EmbeddedNatsServer
from common_events.testing.servers.stan import StanServer
from tests.faults.brokers import (
    JETSTREAM_HEARTBEAT,
    STAN_HEARTBEAT,
    Broker,
    jetstream_broker,
    stan_broker,
)
from tests.faults.ledger import REPORTS
from tests.faults.proxy import TcpProxy
from tests.fixtures.jetstream import nats_server_binary
from tests.fixtures.stan import ServerFactory

FULL = os.environ.get("COMMON_EVENTS_FAULTS", "") == "full"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "faults_full: a long fault scenario; runs only with COMMON_EVENTS_FAULTS=full "
        "(make faults)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    skip = pytest.mark.skip(
        reason="a long fault scenario: runs with COMMON_EVENTS_FAULTS=full (make faults)"
    )
    for item in items:
        if "faults_full" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault scenarios: counts by event id and recovery times")
    for report in REPORTS:
        terminalreporter.write_line(report.line())


ProxyFactory = Callable[[int], Awaitable[TcpProxy]]
BrokerFactory = Callable[..., Awaitable[Broker]]


@pytest.fixture
async def proxies() -> AsyncIterator[ProxyFactory]:
    """Start TCP proxies in front of ports; all are closed after the test."""
    started: list[TcpProxy] = []

    async def start(port: int) -> TcpProxy:
        proxy = await TcpProxy(port).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.close()


@pytest.fixture
def broker_factory(
    request: pytest.FixtureRequest,
    proxies: ProxyFactory,
    tmp_path: Path,
) -> BrokerFactory:
    """``await broker_factory(transport, proxy=True, file_store=False)``: one server of
    that transport (stopped after the test), optionally behind a proxy."""

    counter = itertools.count()

    async def make(transport: str, *, proxy: bool = True, file_store: bool = False) -> Broker:
        if transport == "stan":
            factory: ServerFactory = request.getfixturevalue("stan_server_factory")
            stan: StanServer = factory(file_store=file_store, extra_args=STAN_HEARTBEAT)
            front = await proxies(stan.port) if proxy else None
            return stan_broker(stan, front)
        if transport == "jetstream":
            server = EmbeddedNatsServer(
                store_dir=tmp_path / f"jetstream-{next(counter)}",
                binary=nats_server_binary(),
                config=JETSTREAM_HEARTBEAT,
            )
            request.addfinalizer(server.cleanup)
            await server.start()
            front = await proxies(server.port) if proxy else None
            return jetstream_broker(server, front)
        raise ValueError(transport)

    return make
