"""``subscribe_payloads``: a subscription's payloads handed to a callback, straight from
the parser on a connection this package made, through nats-py's own path on one it did
not; against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from common_events.embedded import EmbeddedNatsServer
from common_events.transports.nats_connection import (
    NatsConnection,
    NatsOptions,
    open_nats,
    parse_servers,
    subscribe_payloads,
)

SCHEMES = {"nats": "nats"}


class Taken:
    """Payloads as a taker receives them, and a wait for how many came."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._changed = asyncio.Event()

    def __call__(self, payload: bytes) -> None:
        self.payloads.append(payload)
        self._changed.set()

    async def wait_for(self, count: int) -> list[bytes]:
        async with asyncio.timeout(10):
            while len(self.payloads) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.payloads


@pytest.fixture
async def connection(nats_server: EmbeddedNatsServer) -> AsyncIterator[NatsConnection]:
    connection = await open_nats(
        parse_servers(nats_server.url, schemes=SCHEMES), NatsOptions(), direct_deliveries=True
    )
    yield connection
    await connection.close()


def count_built_messages(client: Client) -> list[Msg]:
    """The ``Msg`` objects nats-py builds on ``client`` from now on."""
    built: list[Msg] = []

    def build(*args: Any, **kwargs: Any) -> Msg:
        built.append(Msg(*args, **kwargs))
        return built[-1]

    client.msg_class = build  # type: ignore[assignment]
    return built


async def test_payloads_come_in_order_without_nats_py_building_a_message(
    connection: NatsConnection,
) -> None:
    client = connection.client
    built = count_built_messages(client)
    taken = Taken()
    subscription = await subscribe_payloads(client, "direct.test", taken)
    assert subscription.direct
    sent = [f"payload {i}".encode() * (i % 7) for i in range(500)]
    for payload in sent:
        await client.publish("direct.test", payload)
    assert await taken.wait_for(len(sent)) == sent
    assert built == []
    assert client.stats["in_msgs"] >= len(sent)


async def test_other_subscriptions_on_the_connection_keep_nats_py_s_path(
    connection: NatsConnection,
) -> None:
    client = connection.client
    taken = Taken()
    await subscribe_payloads(client, "direct.test", taken)
    ordinary = await client.subscribe("ordinary.test")
    await client.publish("ordinary.test", b"with headers", headers={"Key": "value"})
    await client.publish("direct.test", b"taken")
    await client.publish("ordinary.test", b"plain", reply="the.reply")
    first = await ordinary.next_msg(timeout=5)
    second = await ordinary.next_msg(timeout=5)
    assert (first.data, first.headers) == (b"with headers", {"Key": "value"})
    assert (second.data, second.reply) == (b"plain", "the.reply")
    assert await taken.wait_for(1) == [b"taken"]


async def test_only_a_connection_opened_for_direct_deliveries_gets_the_client_that_takes_them(
    nats_server: EmbeddedNatsServer,
) -> None:
    servers = parse_servers(nats_server.url, schemes=SCHEMES)
    ordinary = await open_nats(servers, NatsOptions())
    try:
        assert type(ordinary.client) is Client  # JetStream's: nats-py's own client
        taken = Taken()
        subscription = await subscribe_payloads(ordinary.client, "direct.test", taken)
        assert not subscription.direct
        await ordinary.client.publish("direct.test", b"through nats-py")
        assert await taken.wait_for(1) == [b"through nats-py"]
    finally:
        await ordinary.close()


async def test_a_client_made_elsewhere_takes_the_same_payloads_through_nats_py(
    nats_server: EmbeddedNatsServer,
) -> None:
    client = await nats.connect(nats_server.url)
    try:
        taken = Taken()
        subscription = await subscribe_payloads(client, "direct.test", taken)
        assert not subscription.direct
        for payload in (b"one", b"two", b"three"):
            await client.publish("direct.test", payload)
        assert await taken.wait_for(3) == [b"one", b"two", b"three"]
    finally:
        await client.close()


async def test_after_unsubscribing_nothing_more_is_taken(connection: NatsConnection) -> None:
    client = connection.client
    taken = Taken()
    subscription = await subscribe_payloads(client, "direct.test", taken)
    await client.publish("direct.test", b"before")
    await taken.wait_for(1)
    await subscription.unsubscribe()
    # A second subscription on the subject sees the next message arrive: by then the
    # first would have taken it too.
    later = Taken()
    await subscribe_payloads(client, "direct.test", later)
    await client.publish("direct.test", b"after")
    await later.wait_for(1)
    await client.flush()
    assert taken.payloads == [b"before"]


async def test_a_taker_that_raises_loses_its_payload_not_the_connection(
    connection: NatsConnection, caplog: pytest.LogCaptureFixture
) -> None:
    client = connection.client
    taken = Taken()

    def take(payload: bytes) -> None:
        if payload == b"bad":
            raise ValueError("cannot take this one")
        taken(payload)

    await subscribe_payloads(client, "direct.test", take)
    for payload in (b"first", b"bad", b"after"):
        await client.publish("direct.test", payload)
    assert await taken.wait_for(2) == [b"first", b"after"]
    assert client.stats["reconnects"] == 0
    assert client.is_connected
    assert "payload taker raised" in caplog.text
