"""A password or token of a STAN connection never shows: not in a log record (DEBUG
included), an exception text, a ``repr`` or the ``url`` property; whether the server
is not there, refuses the credentials, takes them, or is lost and found again."""

from __future__ import annotations

import asyncio
import logging

import pytest

import common_events
from common_events.errors import AuthenticationError, ConnectError, ConnectionLost
from common_events.stan import Client as STAN
from common_events.transports.base import SubscriptionOptions
from common_events.transports.nats_connection import Connected, Reconnecting
from common_events.transports.stan import StanTransport, connect
from tests.faults.proxy import TcpProxy
from tests.fixtures.stan import ServerFactory, StanServer
from tests.stan.leaks import assert_secret_nowhere, closed_port, new_secret
from tests.support.collect import Collector

USER = "tickets"
SUBJECT = "ticket:created"


@pytest.fixture(autouse=True)
def everything_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.fixture
def password() -> str:
    return new_secret("pw")


@pytest.fixture
def server(stan_server_factory: ServerFactory, password: str) -> StanServer:
    return stan_server_factory(extra_args=("--user", USER, "--pass", password))


def assert_transport_hides(secret: str, transport: StanTransport, url: str) -> None:
    assert transport.url == url
    client = transport.client
    assert_secret_nowhere(
        secret, (), transport, transport.url, client, client.connection, client.options
    )


async def test_closed_port(caplog: pytest.LogCaptureFixture) -> None:
    secret = new_secret()
    port = closed_port()
    for url, options in (
        (f"stan://{USER}:{secret}@127.0.0.1:{port}", {}),
        (f"stan://{secret}@127.0.0.1:{port}", {}),
        (f"nats-streaming://{USER}:{secret}@127.0.0.1:{port},{USER}:{secret}@[::1]:{port}", {}),
        (f"stan://127.0.0.1:{port}", {"user": USER, "password": secret}),
        (f"stan://127.0.0.1:{port}", {"token": secret}),
    ):
        with pytest.raises(ConnectError) as caught:
            await connect(url, connect_timeout=0.5, **options)  # type: ignore[arg-type]
        assert "could not connect" in str(caught.value)
        assert_secret_nowhere(secret, caplog.records, caught.value)


async def test_wrong_credentials(
    server: StanServer, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = new_secret("wrong")
    for url, options in (
        (f"stan://{USER}:{wrong}@127.0.0.1:{server.port}", {}),
        (f"stan://{wrong}@127.0.0.1:{server.port}", {}),
        (server.url, {"user": USER, "password": wrong}),
        (server.url, {"token": wrong}),
    ):
        with pytest.raises(AuthenticationError) as caught:
            await connect(url, **options)  # type: ignore[arg-type]
        assert_secret_nowhere(wrong, caplog.records, caught.value)
        assert_secret_nowhere(password, caplog.records, caught.value)


async def test_wrong_token(
    stan_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    token = new_secret("token")
    server = stan_server_factory(extra_args=("--auth", token))
    wrong = new_secret("wrong")
    with pytest.raises(AuthenticationError) as caught:
        await connect(f"stan://{wrong}@127.0.0.1:{server.port}")
    assert_secret_nowhere(wrong, caplog.records, caught.value)
    transport = await connect(f"stan://{token}@127.0.0.1:{server.port}")
    try:
        assert_transport_hides(token, transport, f"stan://***@127.0.0.1:{server.port}")
        await transport.publish(SUBJECT, b"{}")
    finally:
        await transport.close()
    assert_secret_nowhere(token, caplog.records, caught.value)


async def test_right_credentials_through_a_cut_and_a_server_restart(
    stan_server_factory: ServerFactory,
    password: str,
    transports: list[StanTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A file store keeps the client across the restart, so the session carries on.
    server = stan_server_factory(
        file_store=True, extra_args=("--user", USER, "--pass", password)
    )
    proxy = await TcpProxy(server.port).start()
    try:
        transport = await connect(
            f"stan://{USER}:{password}@127.0.0.1:{proxy.port}", reconnect_time_wait=0.1
        )
        transports.append(transport)
        assert_transport_hides(password, transport, f"stan://***@127.0.0.1:{proxy.port}")
        collector = Collector()
        await transport.subscribe(SUBJECT, collector, SubscriptionOptions())
        await transport.publish(SUBJECT, b"1")
        await collector.wait_for_count(1)

        connection = transport.client.connection
        proxy.cut()
        await asyncio.wait_for(connection.wait_for_state(Reconnecting), 5)
        await asyncio.wait_for(connection.wait_for_state(Connected), 10)
        await transport.publish(SUBJECT, b"2")

        server.restart()
        await asyncio.wait_for(connection.wait_for_state(Reconnecting), 5)
        await asyncio.wait_for(connection.wait_for_state(Connected), 15)
        await transport.publish(SUBJECT, b"3")
        await collector.wait_for_count(3)
        assert transport.is_connected
        assert proxy.connections >= 3
    finally:
        await proxy.close()

    messages = [record.getMessage() for record in caplog.records]
    assert any("lost its NATS connection" in message for message in messages)
    assert any("reconnected" in message for message in messages)
    assert_secret_nowhere(password, caplog.records)
    assert_transport_hides(password, transport, f"stan://***@127.0.0.1:{proxy.port}")


async def test_a_lost_session(
    server: StanServer,
    password: str,
    transports: list[StanTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lost: asyncio.Queue[ConnectionLost] = asyncio.Queue()
    transport = await connect(
        server.url,
        user=USER,
        password=password,
        ping_interval=0.2,
        reconnect_time_wait=0.1,
        on_connection_lost=lost.put_nowait,
    )
    transports.append(transport)

    # A memory store forgets the client on restart: the session is lost.
    server.restart()
    error = await asyncio.wait_for(lost.get(), 10)
    assert "no longer knows client" in str(error)
    with pytest.raises(ConnectionLost) as caught:
        await transport.publish(SUBJECT, b"{}")
    assert_secret_nowhere(password, caplog.records, error, caught.value)
    assert_transport_hides(password, transport, server.url)


async def test_reconnects_refused_until_the_connection_gives_up(
    server: StanServer,
    password: str,
    transports: list[StanTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lost: asyncio.Queue[ConnectionLost] = asyncio.Queue()
    transport = await connect(
        f"stan://{USER}:{password}@127.0.0.1:{server.port}",
        ping_interval=60,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=3,
        on_connection_lost=lost.put_nowait,
    )
    transports.append(transport)

    # The server comes back with another password: every reconnect is refused, and
    # then the NATS connection gives up.
    server.extra_args = ("--user", USER, "--pass", new_secret("other"))
    server.restart()
    error = await asyncio.wait_for(lost.get(), 20)
    assert "will not reconnect" in str(error)
    messages = [record.getMessage() for record in caplog.records]
    assert any("Authorization Violation" in message for message in messages), messages
    # Lost for its credentials: the next call says so, as on JetStream.
    with pytest.raises(AuthenticationError) as caught:
        await transport.publish(SUBJECT, b"{}")
    assert_secret_nowhere(password, caplog.records, error, caught.value)
    assert_transport_hides(password, transport, f"stan://***@127.0.0.1:{server.port}")


async def test_the_bus_logs_the_redacted_url(
    server: StanServer, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"stan://{USER}:{password}@127.0.0.1:{server.port}"
    bus = await common_events.connect(url)
    try:
        assert bus.url == f"stan://***@127.0.0.1:{server.port}"
        await bus.publish(SUBJECT, b"{}")
        assert_secret_nowhere(password, caplog.records, bus, bus.url, bus.transport)
    finally:
        await bus.close()
    assert any("***@" in record.getMessage() for record in caplog.records)
    assert_secret_nowhere(password, caplog.records)


async def test_the_drop_in_client(
    server: StanServer, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = new_secret("wrong")
    refused = STAN()
    with pytest.raises(AuthenticationError) as caught:
        await refused.connect(
            server.cluster_id, "drop-in", servers=f"nats://{USER}:{wrong}@127.0.0.1:{server.port}"
        )
    assert_secret_nowhere(wrong, caplog.records, caught.value, refused)

    sc = STAN()
    await sc.connect(
        server.cluster_id, "drop-in", servers=[f"nats://{USER}:{password}@127.0.0.1:{server.port}"]
    )
    try:
        ack = await sc.publish(SUBJECT, b"{}")
        assert ack is not None and ack.guid
        assert_secret_nowhere(password, caplog.records, sc, sc.stan, sc.stan.connection)
    finally:
        await sc.close()
    assert_secret_nowhere(password, caplog.records)
