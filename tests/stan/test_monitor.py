"""``common-events monitor`` and ``common_events.monitor`` against a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from common_events.cli.main import main
from common_events.monitor import MonitorError, read_monitor, render
from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.stan import StanTransport, connect
from tests.fixtures.stan import StanServer
from tests.support.servers import free_port


async def ack(message: TransportMessage) -> None:
    await message.ack()


@pytest.fixture
async def busy_server(stan_server: StanServer) -> AsyncIterator[StanServer]:
    """A server with a durable queue group gone offline, a live member, and pending."""
    orders = await connect(stan_server.url, client_id="orders-1")
    payments = await connect(stan_server.url, client_id="payments-1")
    made: list[StanTransport] = [orders, payments]
    for n in range(3):
        await orders.publish("ticket:created", json.dumps({"n": n}).encode())
    await orders.publish("order:created", b"{}")

    pending_seen = asyncio.Event()

    async def hold_and_tell(message: TransportMessage) -> None:
        pending_seen.set()  # and never ack: the message stays pending

    group = SubscriptionOptions(queue_group="orders-service", durable_name="orders-service")
    offline = await orders.subscribe("ticket:created", ack, group)
    await offline.close()
    await payments.subscribe(
        "order:created", hold_and_tell, SubscriptionOptions(queue_group="payments-service")
    )
    await asyncio.wait_for(pending_seen.wait(), 5)
    yield stan_server
    for transport in made:
        await transport.close()


async def test_snapshot_reads_channels_subscriptions_and_clients(busy_server: StanServer) -> None:
    snapshot = await read_monitor(busy_server.monitor_url)
    assert snapshot.server.cluster_id == busy_server.cluster_id
    channels = {c.name: c for c in snapshot.channels}
    assert (channels["ticket:created"].msgs, channels["ticket:created"].last_seq) == (3, 3)
    (durable,) = channels["ticket:created"].subscriptions
    assert (durable.queue_group, durable.durable_name, durable.offline) == (
        "orders-service",
        "orders-service",
        True,
    )
    (live,) = channels["order:created"].subscriptions
    assert (live.client_id, live.queue_group, live.durable_name) == (
        "payments-1",
        "payments-service",
        None,
    )
    assert (live.offline, live.pending) == (False, 1)
    assert {c.client_id for c in snapshot.clients} == {"orders-1", "payments-1"}
    text = render(snapshot)
    assert "ticket:created" in text and "payments-service" in text


async def test_monitor_command_prints_a_table(
    busy_server: StanServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await asyncio.to_thread(main, ["monitor", busy_server.monitor_url])
    out = capsys.readouterr().out
    assert status == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("CHANNEL") and "MESSAGES" in line)
    assert header.split() == ["CHANNEL", "MESSAGES", "FIRST", "SEQ", "LAST", "SEQ",
                              "SUBSCRIPTIONS"]
    ticket_row = next(line for line in lines if line.startswith("ticket:created "))
    assert ticket_row.split()[:5] == ["ticket:created", "3", "1", "3", "1"]
    subs_header = next(line for line in lines if "QUEUE GROUP" in line)
    assert "OFFLINE" in subs_header and "PENDING" in subs_header and "STALLED" in subs_header
    offline_row = next(line for line in lines if "orders-service" in line)
    assert offline_row.split()[2:5] == ["orders-service", "orders-service", "yes"]
    pending_row = next(line for line in lines if "payments-service" in line)
    assert pending_row.split() == [
        "order:created", "payments-1", "payments-service", "-", "no", "1", "no", "1",
    ]


async def test_monitor_command_json(
    busy_server: StanServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await asyncio.to_thread(main, ["monitor", busy_server.monitor_url, "--json"])
    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert {c["name"] for c in document["channels"]} == {"ticket:created", "order:created"}


async def test_unreachable_monitor_says_how_to_fix_it(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MonitorError, match="monitoring on"):
        await read_monitor(url, http_timeout=1)
    status = await asyncio.to_thread(main, ["monitor", url, "--timeout", "1"])
    assert status == 1
    assert "nats-streaming-server -m PORT" in capsys.readouterr().err
