"""A subscription's deliveries and their acks, on the path that skips nats-py's
per-message machinery (``nats_connection.direct`` and ``write_publish``), against the
real server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from nats.aio.msg import Msg

from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.nats_connection import DirectDeliveries
from common_events.transports.stan import StanTransport, connect
from common_events.transports.stan.subscription import StanMessage
from tests.fixtures.stan import StanServer

SUBJECT = "ticket:created"


async def wait_until_nothing_is_pending(stan_server: StanServer) -> dict[str, Any]:
    """The channel's only subscription once the server holds no unacknowledged message
    for it."""
    async with asyncio.timeout(10):
        while True:
            channel = stan_server.monitor(f"/streaming/channelsz?channel={SUBJECT}&subs=1")
            subscription: dict[str, Any] = channel["subscriptions"][0]
            if subscription["pending_count"] == 0:
                return subscription
            await asyncio.sleep(0.05)


async def test_deliveries_are_handled_in_order_and_acked_without_nats_py_s_msg_or_publish(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transport = await connect(stan_server.url)
    transports.append(transport)
    nc = transport.client.nats
    built: list[Msg] = []
    published: list[str] = []
    original_publish = nc.publish

    def build(*args: Any, **kwargs: Any) -> Msg:
        built.append(Msg(*args, **kwargs))
        return built[-1]

    async def publish(subject: str, payload: bytes = b"", **kwargs: Any) -> None:
        published.append(subject)
        await original_publish(subject, payload, **kwargs)

    nc.msg_class = build  # type: ignore[assignment]
    nc.publish = publish  # type: ignore[method-assign]
    count = 300
    await asyncio.gather(*(transport.publish(SUBJECT, b"%d" % n) for n in range(count)))
    seen: list[bytes] = []
    all_seen = asyncio.Event()

    async def handle(message: TransportMessage) -> None:
        seen.append(message.data)
        await message.ack()
        if len(seen) == count:
            all_seen.set()

    options = SubscriptionOptions(durable_name="path", max_in_flight=64)
    subscription = await transport.subscribe(SUBJECT, handle, options)
    await asyncio.wait_for(all_seen.wait(), 10)
    assert seen == [b"%d" % n for n in range(count)]
    assert (await wait_until_nothing_is_pending(stan_server))["last_sent"] == count
    built_on_the_inbox = [m for m in built if m.subject == subscription.inbox]  # type: ignore[attr-defined]
    assert built_on_the_inbox == []
    assert subscription.ack_inbox not in published  # type: ignore[attr-defined]


async def test_a_failed_ack_is_logged_and_the_next_delivery_still_comes(
    stan_server: StanServer,
    transports: list[StanTransport],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = await connect(stan_server.url)
    transports.append(transport)
    real_ack = StanMessage.ack
    failed: list[int] = []

    async def ack_failing_once(message: StanMessage) -> None:
        if not failed:
            failed.append(message.sequence)
            raise ConnectionError("the ack could not be sent")
        await real_ack(message)

    monkeypatch.setattr(StanMessage, "ack", ack_failing_once)
    handled: list[int] = []
    both = asyncio.Event()

    async def handle(message: StanMessage) -> None:
        handled.append(message.sequence)
        if len(handled) == 2:
            both.set()

    caplog.set_level(logging.WARNING, logger="common_events.transports.stan")
    # Acked by the subscription once the handler returns (manual_acks=False).
    await transport.client.subscribe(SUBJECT, handle, manual_acks=False)
    await transport.publish(SUBJECT, b"first")
    await transport.publish(SUBJECT, b"second")
    await asyncio.wait_for(both.wait(), 10)
    assert handled == [1, 2]
    assert failed == [1]
    assert "not acknowledged: the ack could not be sent" in caplog.text


async def test_closing_ends_the_subscription_s_delivery_task(
    stan_server: StanServer,
) -> None:
    transport = await connect(stan_server.url)
    handled = asyncio.Event()

    async def handle(message: TransportMessage) -> None:
        handled.set()

    await transport.subscribe(SUBJECT, handle, SubscriptionOptions())
    await transport.publish(SUBJECT, b"{}")
    await asyncio.wait_for(handled.wait(), 5)
    delivering = [t for t in asyncio.all_tasks() if t.get_name() == f"deliveries of {SUBJECT}"]
    assert len(delivering) == 1
    await transport.close()
    await asyncio.wait_for(asyncio.wait(delivering), 5)
    assert delivering[0].cancelled()


async def test_a_streaming_connection_takes_deliveries_directly(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transport = await connect(stan_server.url)
    transports.append(transport)
    assert isinstance(transport.client.nats, DirectDeliveries)
