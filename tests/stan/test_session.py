"""The streaming session against the real server: connect errors, close, loss, publish."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common_events.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    PublishTimeout,
    TransportClosed,
)
from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.nats_connection import Closed
from common_events.transports.stan import StanTransport, connect
from tests.fixtures.stan import ServerFactory, StanServer
from tests.support.collect import Collector

SUBJECT = "ticket:created"


def all_threads_stopped(pid: int) -> bool:
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            state = stat.read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue  # a thread that ended meanwhile
        if state not in ("T", "t"):
            return False
    return True


@pytest.fixture
def frozen(stan_server: StanServer) -> Iterator[Callable[[], None]]:
    """Freeze the server with SIGSTOP (it keeps its sockets, answers nothing); always
    thawed at teardown so the fixture can stop it."""
    stopped = False

    def freeze() -> None:
        nonlocal stopped
        assert stan_server.process is not None
        pid = stan_server.process.pid
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        # kill() returns before every thread of the server has stopped: on a loaded
        # machine one could still answer a publish sent right after. Wait until the
        # kernel says each one is stopped ("T" in its stat line).
        deadline = time.monotonic() + 5
        while not all_threads_stopped(pid):
            assert time.monotonic() < deadline, "the server did not stop on SIGSTOP"
            time.sleep(0.001)

    yield freeze
    if stopped and stan_server.process is not None:
        os.kill(stan_server.process.pid, signal.SIGCONT)


async def test_wrong_cluster_id_says_so(stan_server: StanServer) -> None:
    with pytest.raises(ConnectError, match=r"cluster id 'ticketing'.*check the cluster id"):
        await connect(stan_server.url, cluster_id="ticketing")


async def test_client_id_in_use_says_so(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transports.append(await connect(stan_server.url, client_id="tickets-1"))
    with pytest.raises(ConnectError, match=r"client id 'tickets-1'.*already uses it"):
        await connect(stan_server.url, client_id="tickets-1")


async def test_bad_credentials_say_so(
    stan_server_factory: ServerFactory, transports: list[StanTransport]
) -> None:
    server = stan_server_factory(extra_args=("--user", "tickets", "--pass", "s3cret"))
    with pytest.raises(AuthenticationError, match="refused the credentials"):
        await connect(server.url, user="tickets", password="wrong")
    with pytest.raises(AuthenticationError):
        await connect(server.url)
    transport = await connect(server.url, user="tickets", password="s3cret")
    transports.append(transport)
    assert transport.client_id in server.client_ids()


async def test_token_goes_to_the_nats_server(
    stan_server_factory: ServerFactory, transports: list[StanTransport]
) -> None:
    server = stan_server_factory(extra_args=("--auth", "t0ken"))
    with pytest.raises(AuthenticationError):
        await connect(server.url, token="wrong")
    transports.append(await connect(server.url, token="t0ken"))


async def test_no_server_at_the_address_says_so(stan_server: StanServer) -> None:
    stan_server.stop()
    with pytest.raises(ConnectError, match="could not connect to NATS at"):
        await connect(stan_server.url, connect_timeout=0.5)


async def test_close_makes_the_server_forget_the_client_at_once(
    stan_server: StanServer,
) -> None:
    transport = await connect(stan_server.url, client_id="tickets-7f3a")
    await transport.subscribe(SUBJECT, Collector(), SubscriptionOptions(durable_name="d"))
    assert "tickets-7f3a" in stan_server.client_ids()

    await transport.close()

    # Right away, no waiting for missed heartbeats: the CloseRequest did it.
    assert "tickets-7f3a" not in stan_server.client_ids()
    # So the same client id can come straight back, as a restarted service would.
    again = await connect(stan_server.url, client_id="tickets-7f3a")
    await again.close()
    await transport.close()  # idempotent
    with pytest.raises(TransportClosed):
        await transport.publish(SUBJECT, b"{}")


async def test_without_close_request_the_server_keeps_a_stale_client(
    stan_server: StanServer,
) -> None:
    # What the reference course shows: a process that drops its connection without
    # CloseRequest stays registered until the server's heartbeats give up on it.
    transport = await connect(stan_server.url, client_id="tickets-stale")
    await transport.client.nats.close()
    assert "tickets-stale" in stan_server.client_ids()
    await transport.close()


async def test_close_keeps_a_durable_and_unsubscribe_removes_it(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transport = await connect(stan_server.url)
    transports.append(transport)
    options = SubscriptionOptions(queue_group="orders-service", durable_name="orders-service")
    kept = await transport.subscribe(SUBJECT, Collector(), options)
    removed = await transport.subscribe("ticket:updated", Collector(), options)

    await kept.close()
    await removed.unsubscribe()

    channels = {
        channel["name"]: channel.get("subscriptions") or []
        for channel in stan_server.monitor("/streaming/channelsz?subs=1")["channels"]
    }
    (durable,) = channels[SUBJECT]
    assert durable["queue_name"] == "orders-service:orders-service"
    assert durable["is_durable"] is True and durable["is_offline"] is True
    assert channels["ticket:updated"] == []


async def test_lost_session_is_reported_by_callback_and_log(
    stan_server: StanServer,
    transports: list[StanTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lost: asyncio.Queue[ConnectionLost] = asyncio.Queue()
    transport = await connect(
        stan_server.url,
        ping_interval=0.2,
        ping_max_out=3,
        reconnect_time_wait=0.1,
        on_connection_lost=lost.put_nowait,
    )
    transports.append(transport)
    collector = Collector()
    await transport.subscribe(SUBJECT, collector, SubscriptionOptions())

    # A memory-store server that restarts has forgotten every client: nats-py
    # reconnects, the next PING is answered with an error.
    with caplog.at_level(logging.ERROR, logger="common_events.transports.stan"):
        stan_server.restart()
        error = await asyncio.wait_for(lost.get(), timeout=10)

    assert "no longer knows client" in str(error)
    assert any(
        record.levelno == logging.ERROR and transport.client_id in record.getMessage()
        for record in caplog.records
    )
    assert not transport.is_connected
    with pytest.raises(ConnectionLost):
        await transport.publish(SUBJECT, b"{}")
    with pytest.raises(ConnectionLost):
        await transport.subscribe(SUBJECT, collector, SubscriptionOptions())
    await transport.close()  # closing a lost transport is fine


async def test_unanswered_pings_count_as_a_lost_session(
    stan_server: StanServer,
    transports: list[StanTransport],
    frozen: Callable[[], None],
) -> None:
    lost: asyncio.Queue[ConnectionLost] = asyncio.Queue()

    async def on_lost(error: ConnectionLost) -> None:  # coroutine callbacks work too
        await lost.put(error)

    transport = await connect(
        stan_server.url, ping_interval=0.1, ping_max_out=2, on_connection_lost=on_lost
    )
    transports.append(transport)
    frozen()
    error = await asyncio.wait_for(lost.get(), timeout=10)
    assert "did not answer 2 PINGs" in str(error)


async def test_publishes_in_flight_are_bounded_and_each_times_out_on_its_own(
    stan_server: StanServer,
    transports: list[StanTransport],
    frozen: Callable[[], None],
) -> None:
    transport = await connect(
        stan_server.url, max_pub_acks_inflight=4, publish_timeout=1.5, ping_interval=60
    )
    transports.append(transport)
    frozen()
    tasks = [asyncio.create_task(transport.publish(SUBJECT, b"{}")) for _ in range(10)]
    try:
        done, _ = await asyncio.wait(tasks, timeout=0.2)
        # Four are out; the other six wait for a free slot instead of being sent.
        assert not done
        assert transport.client.pub_acks_inflight == 4
    except BaseException:
        for task in tasks:
            task.cancel()
        raise

    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(isinstance(result, PublishTimeout) for result in results)
    assert transport.client.pub_acks_inflight == 0


async def test_many_publishes_in_flight_all_confirmed(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transport = await connect(stan_server.url, max_pub_acks_inflight=64)
    transports.append(transport)
    acks = await asyncio.gather(*(transport.publish(SUBJECT, b"%d" % n) for n in range(2000)))
    assert len({ack.guid for ack in acks}) == 2000
    channel = stan_server.monitor(f"/streaming/channelsz?channel={SUBJECT}")
    assert channel["msgs"] == 2000


async def test_deliveries_count_redeliveries_as_the_server_does(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transport = await connect(stan_server.url)
    transports.append(transport)
    await transport.publish(SUBJECT, b"{}")
    seen: list[TransportMessage] = []
    third = asyncio.Event()

    async def never_ack(message: TransportMessage) -> None:
        seen.append(message)
        await message.nak()  # no negative ack in STAN: it comes back after ack wait
        if len(seen) == 3:
            await message.ack()
            third.set()

    await transport.subscribe(SUBJECT, never_ack, SubscriptionOptions(ack_wait=1))
    await asyncio.wait_for(third.wait(), timeout=10)
    assert [m.delivery_count for m in seen] == [1, 2, 3]
    assert [m.redelivered for m in seen] == [False, True, True]
    assert {m.sequence for m in seen} == {1}
    assert dict(seen[0].headers) == {}


async def test_a_publish_with_its_own_timeout_expires_on_its_own(
    stan_server: StanServer,
    transports: list[StanTransport],
    frozen: Callable[[], None],
) -> None:
    transport = await connect(stan_server.url, publish_timeout=30, ping_interval=60)
    transports.append(transport)
    frozen()
    slow = asyncio.create_task(transport.publish(SUBJECT, b"{}"))  # default: 30 s
    with pytest.raises(PublishTimeout, match=r"within 0\.3s"):
        await asyncio.wait_for(transport.client.publish(SUBJECT, b"{}", ack_timeout=0.3), 5)
    assert not slow.done()
    assert transport.client.pub_acks_inflight == 1
    slow.cancel()


async def test_close_does_not_wait_for_a_running_handler(
    stan_server: StanServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The core's Listener drains before it closes; the transport does not wait again.
    # A handler still running is abandoned: its message comes back after ack wait.
    transport = await connect(stan_server.url)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(message: TransportMessage) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await transport.subscribe(SUBJECT, stuck, SubscriptionOptions(durable_name="d"))
    await transport.publish(SUBJECT, b"{}")
    await asyncio.wait_for(started.wait(), 5)

    loop = asyncio.get_running_loop()
    began = loop.time()
    with caplog.at_level(logging.INFO, logger="common_events.transports.stan"):
        await asyncio.wait_for(transport.close(), 5)
    assert loop.time() - began < 1.0
    await asyncio.wait_for(cancelled.wait(), 5)
    assert "abandoned" in caplog.text
    assert transport.client_id not in stan_server.client_ids()


async def test_handler_grace_is_deprecated_and_ignored(stan_server: StanServer) -> None:
    with pytest.warns(DeprecationWarning, match="handler_grace"):
        transport = await connect(stan_server.url, handler_grace=0.3)
    await transport.close()


async def test_subjects_are_accepted_and_not_needed(stan_server: StanServer) -> None:
    transport = await connect(stan_server.url, subjects=("ticket:created",))
    try:
        assert (await transport.publish("ticket:updated", b"{}")).guid
    finally:
        await transport.close()


async def test_a_lost_session_lets_a_running_handler_finish(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    # On a loss the core drains its handlers before it closes the transport: the
    # session stops deliveries but does not cancel the handler that runs.
    lost: asyncio.Queue[ConnectionLost] = asyncio.Queue()
    transport = await connect(
        stan_server.url, ping_interval=0.2, reconnect_time_wait=0.1,
        on_connection_lost=lost.put_nowait,
    )  # fmt: skip
    transports.append(transport)
    started = asyncio.Event()
    release = asyncio.Event()
    finished = asyncio.Event()

    async def slow(message: TransportMessage) -> None:
        started.set()
        await release.wait()
        await message.ack()  # the session is gone: a no-op, not an error
        finished.set()

    await transport.subscribe(SUBJECT, slow, SubscriptionOptions())
    await transport.publish(SUBJECT, b"{}")
    await asyncio.wait_for(started.wait(), 5)
    stan_server.restart()
    await asyncio.wait_for(lost.get(), 10)

    release.set()
    await asyncio.wait_for(finished.wait(), 5)
    connection = transport.client.connection
    await asyncio.wait_for(connection.wait_for_state(Closed), 5)


async def test_nats_closed_is_deprecated_and_still_reports_the_loss(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    lost: asyncio.Queue[ConnectionLost] = asyncio.Queue()
    transport = await connect(stan_server.url, on_connection_lost=lost.put_nowait)
    transports.append(transport)
    with pytest.warns(DeprecationWarning, match="nats_closed"):
        await transport.client.nats_closed()
    assert "closed" in str(await asyncio.wait_for(lost.get(), 5))
    assert not transport.is_connected
