"""Publishes caught by an outage are sent again with their guid once the server
answers, on a connection this package opened and on one the caller owns; those that
fail without their PubAck say their outcome is unknown."""

from __future__ import annotations

import asyncio

import nats
import pytest

from common_events.errors import PublishTimeout
from common_events.transports.stan import StanTransport, connect
from tests.faults.proxy import TcpProxy
from tests.fixtures.stan import StanServer
from tests.stan.stored import stored, wait_stored

SUBJECT = "ticket:created"


async def cut_after_storing(
    server: StanServer, proxy: TcpProxy, transport: StanTransport
) -> asyncio.Future[str]:
    """A publish the server stores while its PubAck is held, then the network is cut:
    its PubAck is lost for good."""
    proxy.stall(to_server=False)
    waiting = await transport.client.publish_async(SUBJECT, b"caught")
    await wait_stored(server, 1, within=5)
    proxy.cut(refuse=True)
    return waiting


async def test_a_publish_whose_puback_was_lost_is_sent_again_after_the_reconnect(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(f"stan://127.0.0.1:{proxy.port}", reconnect_time_wait=0.1)
    transports.append(transport)
    waiting = await cut_after_storing(stan_server, proxy, transport)
    proxy.restore()
    # Confirmed within moments of the reconnect, not after publish_timeout (30 s): the
    # same guid went again, which is what the pending PubAck was waiting for.
    guid = await asyncio.wait_for(waiting, 5)
    assert guid
    assert await asyncio.to_thread(stored, stan_server) == 2  # at-least-once
    assert transport.is_connected


async def test_a_connection_the_caller_owns_is_watched_too(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    nc = await nats.connect(f"nats://127.0.0.1:{proxy.port}", reconnect_time_wait=0.1)
    try:
        transport = await connect(stan_server.url, nats_connection=nc)
        transports.append(transport)
        waiting = await cut_after_storing(stan_server, proxy, transport)
        proxy.restore()
        # Nobody reports the caller's reconnects to the session: it notices them when
        # publishes stop being acknowledged (within about a second).
        assert await asyncio.wait_for(waiting, 6)
    finally:
        await transport.close()
        await nc.close()


async def test_a_publish_that_times_out_says_it_may_have_been_stored(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(f"stan://127.0.0.1:{proxy.port}")
    transports.append(transport)
    proxy.stall(to_server=False)
    waiting = await transport.client.publish_async(SUBJECT, b"late", ack_timeout=0.3)
    with pytest.raises(PublishTimeout, match="may or may not have been stored"):
        await asyncio.wait_for(waiting, 5)
    proxy.restore()
