"""Publishes that find the PubAck window (``max_pub_acks_inflight``) full queue in the
order they were made, and the PubAck that frees a slot sends the next: against the real
server, every one is confirmed or fails with an error that says what happened to it."""

from __future__ import annotations

import asyncio

import pytest

from common_events import Bus, Publisher, TicketCreatedEvent, encode_event
from common_events.errors import PublishError, PublishTimeout, TransportClosed
from common_events.transports.base import PublishAck, SubscriptionOptions, TransportMessage
from common_events.transports.stan import StanTransport, connect
from tests.faults.proxy import TcpProxy
from tests.fixtures.stan import StanServer
from tests.stan.stored import stored, wait_stored
from tests.support.tasks import tasks_created

SUBJECT = "ticket:created"


async def received(transport: StanTransport, count: int) -> list[bytes]:
    """The first ``count`` messages of the channel, in the order the server stored them."""
    messages: list[bytes] = []
    done = asyncio.Event()

    async def collect(message: TransportMessage) -> None:
        messages.append(message.data)
        await message.ack()
        if len(messages) >= count:
            done.set()

    subscription = await transport.subscribe(
        SUBJECT, collect, SubscriptionOptions(deliver_all_available=True, max_in_flight=256)
    )
    await asyncio.wait_for(done.wait(), 10)
    await subscription.unsubscribe()
    return messages[:count]


async def test_gathered_publishes_beyond_the_window_are_all_confirmed_and_stored_in_order(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transport = await connect(stan_server.url, max_pub_acks_inflight=8)
    transports.append(transport)
    payloads = [b"%d" % n for n in range(1000)]
    acks = await asyncio.wait_for(
        asyncio.gather(*(transport.publish(SUBJECT, payload) for payload in payloads)), 20
    )
    assert all(isinstance(ack, PublishAck) for ack in acks)
    assert len({ack.guid for ack in acks}) == 1000
    assert transport.client.pub_acks_inflight == 0
    assert transport.client.publish_room == 8
    assert await received(transport, 1000) == payloads


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


async def test_gathered_publisher_publishes_need_no_task_each_and_keep_their_order(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transport = await connect(stan_server.url, max_pub_acks_inflight=8)
    transports.append(transport)
    publisher = TicketCreatedPublisher(Bus(transport))
    events = [
        TicketCreatedEvent(id=f"t{n}", version=0, title="concert", price=n, user_id="u1")
        for n in range(500)
    ]
    with tasks_created() as created:
        acks = await asyncio.wait_for(
            asyncio.gather(*(publisher.publish(event) for event in events)), 20
        )
    assert created == []  # neither gather nor the transport made one per publish
    assert len({ack.guid for ack in acks}) == 500
    assert transport.client.pub_acks_inflight == 0
    assert await received(transport, 500) == [encode_event(event) for event in events]


async def test_a_publisher_publish_is_sent_before_it_is_awaited(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=1)
    transports.append(transport)
    publisher = TicketCreatedPublisher(Bus(transport))
    event = TicketCreatedEvent(id="t1", version=0, title="concert", price=1, user_id="u1")
    proxy.stall(to_server=False)  # its PubAck waits in the proxy
    sent = publisher.publish(event)
    queued = publisher.publish(event.model_copy(update={"id": "t2"}))
    await wait_stored(stan_server, 1)  # nothing awaited either confirmation
    assert not sent.done() and not queued.done()
    proxy.restore()
    first, second = await asyncio.wait_for(asyncio.gather(sent, queued), 5)
    assert first.guid != second.guid
    assert await asyncio.to_thread(stored, stan_server) == 2


async def test_publishes_beyond_nats_py_outbound_buffer_are_finished_by_a_task(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transport = await connect(stan_server.url, max_pub_acks_inflight=64)
    transports.append(transport)
    # 40 x 100 kB started at once: past nats-py's 2 MiB outbound buffer, where its
    # publish waits for the flusher and a task carries the send on.
    payloads = [bytes([65 + n % 26]) * 100_000 for n in range(40)]
    with tasks_created() as created:
        confirmations = [transport.publish_now(SUBJECT, payload) for payload in payloads]
    assert created  # some sends did wait
    acks = await asyncio.wait_for(asyncio.gather(*confirmations), 20)
    assert len({ack.guid for ack in acks}) == 40
    assert await received(transport, 40) == payloads


async def test_a_full_window_holds_the_rest_back_until_pubacks_free_slots(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=4)
    transports.append(transport)
    proxy.stall(to_server=False)  # the server stores, its PubAcks wait in the proxy
    tasks = [
        asyncio.create_task(transport.publish(SUBJECT, b"%d" % n)) for n in range(10)
    ]
    await wait_stored(stan_server, 4)
    await asyncio.sleep(0.2)
    # Only the window went out; the other six queue, not sent.
    assert await asyncio.to_thread(stored, stan_server) == 4
    assert transport.client.pub_acks_inflight == 4
    assert transport.client.publish_room == 0
    assert not any(task.done() for task in tasks)

    proxy.restore()
    acks = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert len({ack.guid for ack in acks}) == 10
    assert await received(transport, 10) == [b"%d" % n for n in range(10)]
    assert await asyncio.to_thread(stored, stan_server) == 10


async def test_publishes_queued_behind_a_full_window_fail_cleanly_on_close(
    stan_server: StanServer, proxy: TcpProxy
) -> None:
    transport = await connect(
        f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=2, connect_timeout=0.5
    )
    proxy.stall(to_server=False)
    tasks = [asyncio.create_task(transport.publish(SUBJECT, b"%d" % n)) for n in range(6)]
    held_back = asyncio.create_task(transport.client.publish_async(SUBJECT, b"held back"))
    await wait_stored(stan_server, 2)
    await asyncio.sleep(0.05)
    assert not held_back.done()  # publish_async waits for its turn to be sent

    await transport.close()
    results = await asyncio.wait_for(
        asyncio.gather(*tasks, held_back, return_exceptions=True), 5
    )
    assert all(isinstance(result, TransportClosed) for result in results), results
    sent, queued = results[:2], results[2:]
    for error in sent:
        assert "waiting for its PubAck: it may or may not have been stored" in str(error)
    for error in queued:
        assert "was waiting for room under max_pub_acks_inflight and was not sent" in str(
            error
        )
    assert await asyncio.to_thread(stored, stan_server) == 2


async def test_a_queued_publish_times_out_on_its_own_counted_from_its_send(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(
        f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=1, publish_timeout=0.4
    )
    transports.append(transport)
    proxy.stall(to_server=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    failed_at: list[float] = []

    async def publish(n: int) -> None:
        with pytest.raises(PublishTimeout, match="may or may not have been stored"):
            await transport.publish(SUBJECT, b"%d" % n)
        failed_at.append(loop.time() - started)

    await asyncio.wait_for(asyncio.gather(*(publish(n) for n in range(3))), 5)
    # Each went out when the one before it timed out and freed the only slot.
    assert len(failed_at) == 3
    assert failed_at[0] >= 0.35
    assert failed_at[1] - failed_at[0] >= 0.35
    assert failed_at[2] - failed_at[1] >= 0.35
    await wait_stored(stan_server, 3)
    proxy.restore()


async def test_after_a_reconnect_those_sent_go_again_and_the_queue_follows(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(
        f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=4, reconnect_time_wait=0.1
    )
    transports.append(transport)
    proxy.stall(to_server=False)
    payloads = [b"%d" % n for n in range(10)]
    tasks = [asyncio.create_task(transport.publish(SUBJECT, payload)) for payload in payloads]
    await wait_stored(stan_server, 4)
    proxy.cut(refuse=True)  # the four PubAcks are lost with the connection
    await asyncio.sleep(0.2)
    proxy.restore()

    acks = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert len({ack.guid for ack in acks}) == 10
    # The window went again with the same guids (stored twice: at-least-once), then
    # the six that queued went once each.
    await wait_stored(stan_server, 14)
    messages = await received(transport, 14)
    assert sorted(set(messages)) == sorted(payloads)
    assert messages[8:] == payloads[4:]


async def test_a_publish_cancelled_while_it_queues_is_never_sent(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=1)
    transports.append(transport)
    proxy.stall(to_server=False)
    first = asyncio.create_task(transport.publish(SUBJECT, b"first"))
    cancelled = asyncio.create_task(transport.publish(SUBJECT, b"cancelled"))
    last = asyncio.create_task(transport.publish(SUBJECT, b"last"))
    await wait_stored(stan_server, 1)
    cancelled.cancel()
    proxy.restore()

    await asyncio.wait_for(asyncio.gather(first, last), 5)
    assert cancelled.cancelled()
    assert await received(transport, 2) == [b"first", b"last"]
    await asyncio.sleep(0.1)
    assert await asyncio.to_thread(stored, stan_server) == 2


async def test_held_back_and_queued_publishes_go_out_in_the_order_they_were_made(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=1)
    transports.append(transport)
    client = transport.client
    proxy.stall(to_server=False)
    first = await client.publish_async(SUBJECT, b"a")  # room: sent at once
    second = asyncio.create_task(transport.publish(SUBJECT, b"b"))  # queues
    third = asyncio.create_task(client.publish_async(SUBJECT, b"c"))  # queues, held back
    fourth = asyncio.create_task(transport.publish(SUBJECT, b"d"))
    await asyncio.sleep(0.1)
    assert not third.done()
    proxy.restore()

    assert await asyncio.wait_for(first, 5)
    await asyncio.wait_for(asyncio.gather(second, fourth), 5)
    assert await asyncio.wait_for(await third, 5)
    assert await received(transport, 4) == [b"a", b"b", b"c", b"d"]


async def test_a_queued_publish_the_server_cannot_take_fails_alone(
    stan_server: StanServer, proxy: TcpProxy, transports: list[StanTransport]
) -> None:
    transport = await connect(f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=1)
    transports.append(transport)
    too_large = b"x" * (transport.client.nats.max_payload + 1)
    proxy.stall(to_server=False)
    first = asyncio.create_task(transport.publish(SUBJECT, b"first"))
    refused = asyncio.create_task(transport.publish(SUBJECT, too_large))
    last = asyncio.create_task(transport.publish(SUBJECT, b"last"))
    await wait_stored(stan_server, 1)
    proxy.restore()

    with pytest.raises(PublishError, match="larger than the server's maximum payload"):
        await asyncio.wait_for(refused, 5)
    await asyncio.wait_for(asyncio.gather(first, last), 5)
    assert await received(transport, 2) == [b"first", b"last"]
    assert transport.client.pub_acks_inflight == 0
    assert transport.client.publish_room == 1


async def test_closing_during_publish_many_fails_the_rest_of_the_batch(
    stan_server: StanServer, proxy: TcpProxy
) -> None:
    transport = await connect(
        f"stan://127.0.0.1:{proxy.port}", max_pub_acks_inflight=2, connect_timeout=0.5
    )
    proxy.stall(to_server=False)
    batch = asyncio.create_task(transport.publish_many(SUBJECT, [b"%d" % n for n in range(8)]))
    await wait_stored(stan_server, 2)
    await asyncio.sleep(0.05)
    assert not batch.done()  # waiting for room in the window

    await transport.close()
    results = await asyncio.wait_for(batch, 5)
    assert len(results) == 8
    assert all(isinstance(result, TransportClosed) for result in results), results
    assert "may or may not have been stored" in str(results[0])
    assert "is closed" in str(results[2])
    assert await asyncio.to_thread(stored, stan_server) == 2
