"""``common_events.stan.Client`` used the way asyncio-nats-streaming code uses it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS

from common_events.stan import Client as STAN
from common_events.stan import ErrConnectReqTimeout, Msg, StanError
from tests.fixtures.stan import StanServer


class Inbox:
    """Messages a callback received, and waiting for them."""

    def __init__(self) -> None:
        self.msgs: list[Msg] = []
        self._changed = asyncio.Condition()

    async def cb(self, msg: Msg) -> None:
        async with self._changed:
            self.msgs.append(msg)
            self._changed.notify_all()

    async def wait_for(self, count: int, within: float = 10) -> list[Msg]:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.msgs) >= count)
        return self.msgs


@pytest.fixture
async def nc(stan_server: StanServer) -> AsyncIterator[NATS]:
    connection = await nats.connect(stan_server.nats_url)
    yield connection
    await connection.close()


@pytest.fixture
async def sc(stan_server: StanServer, nc: NATS) -> AsyncIterator[STAN]:
    client = STAN()
    await client.connect(stan_server.cluster_id, "client-123", nats=nc)
    yield client
    await client.close()


async def test_readme_basic_usage(sc: STAN, nc: NATS) -> None:
    ack = await sc.publish("hi", b"hello")
    assert ack.guid and not ack.error
    await sc.publish("hi", b"world")

    inbox = Inbox()
    sub = await sc.subscribe("hi", start_at="first", cb=inbox.cb)
    msgs = await inbox.wait_for(2)
    assert [(m.seq, m.data) for m in msgs] == [(1, b"hello"), (2, b"world")]
    assert msgs[0].sequence == 1 and msgs[0].proto.subject == "hi"
    assert msgs[0].timestamp > 0 and msgs[0].sub is sub

    await sub.unsubscribe()
    await sc.close()
    # The borrowed NATS connection is the caller's to close.
    assert nc.is_connected


async def test_async_publishing_with_ack_handler(sc: STAN) -> None:
    acks: asyncio.Queue[object] = asyncio.Queue()

    async def ack_handler(ack: object) -> None:
        await acks.put(ack)

    for _ in range(100):
        assert await sc.publish("foo", b"hello-world", ack_handler=ack_handler) is None
    received = [await asyncio.wait_for(acks.get(), 5) for _ in range(100)]
    assert all(getattr(ack, "guid", "") and not getattr(ack, "error", "") for ack in received)


async def test_manual_acks_and_redelivery(sc: STAN) -> None:
    await sc.publish("foo", b"once")
    inbox = Inbox()

    async def cb(msg: Msg) -> None:
        await inbox.cb(msg)
        if len(inbox.msgs) == 2:  # ack only the redelivery
            await sc.ack(msg)

    await sc.subscribe("foo", start_at="first", cb=cb, manual_acks=True, ack_wait=1)
    first, second = await inbox.wait_for(2)
    assert first.seq == second.seq == 1
    assert (first.redelivered, second.redelivered) == (False, True)
    assert second.redelivery_count == 1


async def test_auto_ack_unless_the_callback_fails(sc: STAN) -> None:
    errors: list[Exception] = []
    inbox = Inbox()

    async def cb(msg: Msg) -> None:
        await inbox.cb(msg)
        if msg.data == b"bad" and not msg.redelivered:
            raise RuntimeError("boom")

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)

    await sc.subscribe("foo", cb=cb, error_cb=error_cb, deliver_all_available=True, ack_wait=1)
    await sc.publish("foo", b"good")
    await sc.publish("foo", b"bad")
    msgs = await inbox.wait_for(3)
    # "good" was acked automatically; "bad" failed, went to error_cb, and came back.
    assert [(m.data, m.redelivered) for m in msgs] == [
        (b"good", False),
        (b"bad", False),
        (b"bad", True),
    ]
    assert [str(e) for e in errors] == ["boom"]


async def test_start_positions(sc: STAN) -> None:
    for n in range(1, 6):
        await sc.publish("foo", b"%d" % n)

    by_sequence = Inbox()
    await sc.subscribe("foo", start_at="sequence", sequence=3, cb=by_sequence.cb)
    assert [m.seq for m in await by_sequence.wait_for(3)] == [3, 4, 5]

    last = Inbox()
    await sc.subscribe("foo", start_at="last_received", cb=last.cb)
    assert [m.seq for m in await last.wait_for(1)] == [5]

    recent = Inbox()
    await sc.subscribe("foo", start_at="time", time=time.time() - 60, cb=recent.cb)
    assert [m.seq for m in await recent.wait_for(5)] == [1, 2, 3, 4, 5]

    new_only = Inbox()
    await sc.subscribe("foo", cb=new_only.cb)
    await sc.publish("foo", b"6")
    assert [m.seq for m in await new_only.wait_for(1)] == [6]


async def test_durable_subscription_resumes_after_reconnect(
    stan_server: StanServer, nc: NATS
) -> None:
    sc = STAN()
    await sc.connect(stan_server.cluster_id, "client-123", nats=nc)
    inbox = Inbox()
    await sc.subscribe("foo", durable_name="bar", cb=inbox.cb)
    for n in range(3):
        await sc.publish("foo", b"%d" % n)
    await inbox.wait_for(3)
    await sc.close()

    other = STAN()
    await other.connect(stan_server.cluster_id, "publisher", nats=nc)
    for n in range(3, 6):
        await other.publish("foo", b"%d" % n)

    sc = STAN()
    await sc.connect(stan_server.cluster_id, "client-123", nats=nc)
    resumed = Inbox()
    await sc.subscribe("foo", durable_name="bar", cb=resumed.cb)
    assert [m.data for m in await resumed.wait_for(3)] == [b"3", b"4", b"5"]
    await sc.close()
    await other.close()


async def test_queue_group_splits_messages(stan_server: StanServer, nc: NATS) -> None:
    clients: list[STAN] = []
    members: list[Inbox] = []
    everything = Inbox()
    for n in range(3):
        sc = STAN()
        await sc.connect(stan_server.cluster_id, f"client-{n}", nats=nc)
        member = Inbox()

        async def cb(msg: Msg, member: Inbox = member) -> None:
            await member.cb(msg)
            await everything.cb(msg)

        await sc.subscribe("foo", queue="bar", cb=cb)
        clients.append(sc)
        members.append(member)
    for n in range(30):
        await clients[0].publish("foo", b"%d" % n)
    await everything.wait_for(30)
    assert sorted(int(m.data) for m in everything.msgs) == list(range(30))
    assert all(member.msgs for member in members)
    for sc in clients:
        await sc.close()


async def test_connecting_to_a_wrong_cluster_raises_the_stan_py_error(nc: NATS) -> None:
    sc = STAN()
    with pytest.raises(ErrConnectReqTimeout, match="failed connecting to 'no-such-cluster'"):
        await sc.connect("no-such-cluster", "client-123", nats=nc)


async def test_duplicate_client_id_is_a_stan_error(sc: STAN, stan_server: StanServer) -> None:
    other = STAN()
    with pytest.raises(StanError, match="already"):
        await other.connect(stan_server.cluster_id, "client-123", servers=stan_server.nats_url)


async def test_closing_gives_a_running_callback_handler_grace(
    stan_server: StanServer, nc: NATS, caplog: pytest.LogCaptureFixture
) -> None:
    # No core drains in front of the drop-in, so it waits for a running callback itself.
    sc = STAN()
    await sc.connect(stan_server.cluster_id, "client-grace", nats=nc, handler_grace=0.5)
    started = asyncio.Event()
    finished = asyncio.Event()

    async def slow(msg: Msg) -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.set()

    sub = await sc.subscribe("foo", cb=slow)
    await sc.publish("foo", b"slow")
    await asyncio.wait_for(started.wait(), 5)
    await sub.close()
    assert finished.is_set()

    started.clear()
    cancelled = asyncio.Event()

    async def stuck(msg: Msg) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await sc.subscribe("bar", cb=stuck)
    await sc.publish("bar", b"stuck")
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(sc.close(), 5)
    await asyncio.wait_for(cancelled.wait(), 5)
    assert "still running after 0.5s" in caplog.text
    assert "client-grace" not in stan_server.client_ids()
