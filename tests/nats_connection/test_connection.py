"""Opening a NATS connection on a real nats-server: errors that say what failed, state
as objects, a loss reported once, and no secret anywhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from common_events.embedded import EmbeddedNatsServer
from common_events.errors import AuthenticationError, ConnectError, ConnectionLost
from common_events.transports.nats_connection import (
    Connected,
    ConnectionState,
    Lost,
    NatsConnection,
    NatsOptions,
    Reconnecting,
    open_nats,
    parse_servers,
)
from tests.support.servers import free_port

SECRET = "pa55-Secret-7c1"
AUTH = f'authorization {{\n  user: "alice"\n  password: "{SECRET}"\n}}\n'
SCHEMES = {"nats": "nats", "tls": "tls"}

ServerFactory = Callable[..., Awaitable[EmbeddedNatsServer]]


def assert_secret_nowhere(caplog: pytest.LogCaptureFixture, *texts: object) -> None:
    for record in caplog.records:
        assert SECRET not in record.getMessage(), record.getMessage()
        assert SECRET not in str(record.args)
    for text in texts:
        assert SECRET not in str(text)
        assert SECRET not in repr(text)


async def wait_for_state(connection: NatsConnection, state: type[ConnectionState]) -> None:
    await asyncio.wait_for(connection.wait_for_state(state), 15)


async def test_right_credentials_from_the_url_connect_and_leave_no_trace(
    nats_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await nats_server_factory(AUTH)
    servers = parse_servers(f"nats://alice:{SECRET}@127.0.0.1:{server.port}", schemes=SCHEMES)

    connection = await open_nats(servers, NatsOptions(name="svc", connect_timeout=1.0))
    try:
        assert isinstance(connection.state, Connected)
        await connection.client.flush()
        assert_secret_nowhere(caplog, connection, connection.options, servers)
    finally:
        await connection.close()


async def test_wrong_credentials_fail_at_once_with_an_authentication_error(
    nats_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await nats_server_factory(AUTH)
    wrong = f"{SECRET}-wrong"
    servers = parse_servers(f"nats://alice:{wrong}@127.0.0.1:{server.port}", schemes=SCHEMES)
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(AuthenticationError) as caught:
        await open_nats(servers, NatsOptions(connect_timeout=2.0))

    assert loop.time() - started < 5.0
    assert "refused the credentials" in str(caught.value)
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert_secret_nowhere(caplog, caught.value, caught.value.__cause__)


async def test_a_closed_port_fails_with_the_reason_and_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    servers = parse_servers(f"nats://alice:{SECRET}@127.0.0.1:{port}", schemes=SCHEMES)

    with pytest.raises(ConnectError) as caught:
        await open_nats(servers, NatsOptions(connect_timeout=0.5))

    assert not isinstance(caught.value, AuthenticationError)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert_secret_nowhere(caplog, caught.value)


async def test_an_outage_is_a_reconnect_and_a_dead_server_a_loss_reported_once(
    nats_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await nats_server_factory(AUTH)
    servers = parse_servers(f"nats://alice:{SECRET}@127.0.0.1:{server.port}", schemes=SCHEMES)
    connection = await open_nats(
        servers,
        NatsOptions(connect_timeout=0.5, reconnect_time_wait=0.1, max_reconnect_attempts=3),
    )
    losses: list[ConnectionLost] = []
    lost = asyncio.Event()

    def on_lost(error: ConnectionLost) -> None:
        losses.append(error)
        lost.set()

    connection.add_connection_lost_callback(on_lost)
    try:
        await server.stop()
        await wait_for_state(connection, Reconnecting)
        await server.start()
        await wait_for_state(connection, Connected)

        server.kill()
        await asyncio.wait_for(lost.wait(), 15)
        assert isinstance(connection.state, Lost)
        assert len(losses) == 1
        assert connection.lost.fire(ConnectionLost("again")) is False
        assert_secret_nowhere(caplog, connection, losses[0])
        assert any("reconnected" in record.getMessage() for record in caplog.records)
    finally:
        await connection.close()
