"""What the JetStream transport adds over the conformance suite, on a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import nats
import pytest

from common_events import (
    DeadLetter,
    DeadLetterReason,
    Listener,
    Message,
    TicketCreatedEvent,
    connect,
)
from common_events.errors import PublishError, TransportClosed
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.base import (
    SubscriptionOptions,
    TransportMessage,
    TransportSubscription,
)
from common_events.transports.jetstream import JetStreamTransport, consumer_name
from tests.support.collect import Collector

Connect = Callable[..., Awaitable[JetStreamTransport]]
SUBJECT = "ticket:created"


async def consumer_names(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        return sorted(str(info.name) for info in await nc.jsm().consumers_info("EVENTS"))
    finally:
        await nc.close()


async def test_publish_sends_the_message_id_and_given_headers_and_returns_the_stream_sequence(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    payload = b'{"id":"t1","version":0,"title":"concert","price":20,"userId":"u1"}'
    ack = await transport.publish(SUBJECT, payload, {"traceparent": "00-abc-def-01"})
    assert (ack.subject, ack.stream, ack.sequence, ack.duplicate) == (SUBJECT, "EVENTS", 1, False)

    collector = Collector()
    await transport.subscribe(SUBJECT, collector, SubscriptionOptions(durable_name="d"))
    [message] = await collector.wait_for_count(1)
    # The payload is the plain wire JSON; metadata travels only in headers.
    assert message.data == payload
    headers = message.headers
    assert len(headers["Nats-Msg-Id"]) >= 16
    assert headers["traceparent"] == "00-abc-def-01"
    # Only the de-duplication id is added: every header costs parse time on delivery.
    assert set(headers) == {"Nats-Msg-Id", "traceparent"}


async def test_a_repeated_message_id_is_stored_once(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    first = await transport.publish(SUBJECT, b"{}", {"Nats-Msg-Id": "event-1"})
    again = await transport.publish(SUBJECT, b"{}", {"Nats-Msg-Id": "event-1"})
    other = await transport.publish(SUBJECT, b"{}", {"Nats-Msg-Id": "event-2"})
    assert (first.sequence, first.duplicate) == (1, False)
    assert (again.sequence, again.duplicate) == (1, True)
    assert other.sequence == 2


async def test_many_publishes_in_flight_at_once_are_all_stored(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    # More at once than may wait on the server: the rest wait their turn in the client.
    transport = await jetstream_connect(nats_server.url, max_pending_publishes=64)
    acks = await asyncio.gather(
        *(transport.publish(SUBJECT, json.dumps({"n": n}).encode()) for n in range(3000))
    )
    assert sorted(ack.sequence or 0 for ack in acks) == list(range(1, 3001))
    assert not any(ack.duplicate for ack in acks)


async def test_a_subject_outside_the_stream_is_a_publish_error(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    with pytest.raises(PublishError, match="no JetStream stream stores 'nobody:listens'"):
        await transport.publish("nobody:listens", b"{}")


async def test_nak_with_delay_redelivers_after_the_delay_not_the_ack_wait(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, float]] = []
    done = asyncio.Event()

    async def handler(message: TransportMessage) -> None:
        seen.append((message.delivery_count, loop.time()))
        if message.delivery_count == 1:
            await message.nak(0.3)
        else:
            await message.ack()
            done.set()

    await transport.subscribe(
        SUBJECT, handler, SubscriptionOptions(durable_name="d", ack_wait=30.0)
    )
    await transport.publish(SUBJECT, b"{}")
    await asyncio.wait_for(done.wait(), 10)
    (first, t1), (second, t2) = seen
    assert (first, second) == (1, 2)
    assert 0.25 <= t2 - t1 < 5.0


async def test_one_subscription_never_runs_two_handlers_at_once(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    running = 0
    most = 0
    handled = Collector()

    async def handler(message: TransportMessage) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)  # gives a second delivery the chance to overlap
        running -= 1
        await handled(message)

    await transport.subscribe(
        SUBJECT, handler, SubscriptionOptions(durable_name="d", max_in_flight=50)
    )
    await asyncio.gather(*(transport.publish(SUBJECT, b"{}") for _ in range(100)))
    await handled.wait_for_count(100)
    assert most == 1


async def test_close_keeps_the_durable_consumer_and_unsubscribe_removes_it(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    options = SubscriptionOptions(queue_group="orders-service", durable_name="orders-service")
    name = consumer_name("orders-service", SUBJECT)

    subscription = await transport.subscribe(SUBJECT, Collector(), options)
    await subscription.close()
    assert await consumer_names(nats_server.url) == [name]

    subscription = await transport.subscribe(SUBJECT, Collector(), options)
    await subscription.unsubscribe()
    assert await consumer_names(nats_server.url) == []


async def test_a_non_durable_group_consumer_goes_with_its_last_member(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    first = await jetstream_connect(nats_server.url)
    second = await jetstream_connect(nats_server.url)
    options = SubscriptionOptions(queue_group="audit")
    one = await first.subscribe(SUBJECT, Collector(), options)
    two = await second.subscribe(SUBJECT, Collector(), options)
    assert len(await consumer_names(nats_server.url)) == 1
    await one.close()
    assert len(await consumer_names(nats_server.url)) == 1
    await two.close()
    assert await consumer_names(nats_server.url) == []


async def test_a_returning_durable_may_change_its_ack_wait_and_in_flight(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    subscription = await transport.subscribe(
        SUBJECT, Collector(), SubscriptionOptions(durable_name="d", ack_wait=5.0)
    )
    await subscription.close()
    await transport.subscribe(
        SUBJECT,
        Collector(),
        SubscriptionOptions(durable_name="d", ack_wait=7.0, max_in_flight=3, max_deliveries=4),
    )
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jsm().consumer_info("EVENTS", consumer_name("d", SUBJECT))
    finally:
        await nc.close()
    assert (info.config.ack_wait, info.config.max_ack_pending) == (7.0, 3)
    # No server-side bound: the core enforces max_deliveries, and a message leaves only
    # once its dead-letter record is stored (docs/dead-letters.md).
    assert info.config.max_deliver == -1


async def test_close_is_idempotent_and_final(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    await transport.subscribe(SUBJECT, Collector(), SubscriptionOptions(durable_name="d"))
    await transport.close()
    await transport.close()
    with pytest.raises(TransportClosed):
        await transport.publish(SUBJECT, b"{}")
    assert await consumer_names(nats_server.url) == [consumer_name("d", SUBJECT)]


async def test_a_message_whose_deliveries_all_time_out_is_dead_lettered_not_dropped(
    nats_server: EmbeddedNatsServer,
) -> None:
    attempts: list[int] = []

    class ForgetfulListener(Listener[TicketCreatedEvent]):
        queue_group = "orders-service"
        ack_wait = 0.3
        max_deliveries = 2

        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
            attempts.append(msg.delivery_count)  # and never acknowledges

    dead_letters = Collector()
    async with await connect(nats_server.url) as bus:
        await bus.subscribe(
            "dead-letter:ticket:created", dead_letters, SubscriptionOptions(durable_name="ops")
        )
        await ForgetfulListener(bus).listen()
        event = TicketCreatedEvent(id="t1", version=0, title="x", price=1, user_id="u1")
        await bus.publish("ticket:created", event.model_dump_json().encode())
        [dead] = await dead_letters.wait_for_count(1)

    record = DeadLetter.model_validate_json(dead.data)
    assert attempts == [1, 2]
    assert record.delivery_count == 3
    assert record.reason == DeadLetterReason.MAX_DELIVERIES


async def test_closing_does_not_wait_for_a_running_handler_whose_message_comes_back(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    # The core's Listener drains before it closes; a handler still running after that
    # is abandoned by the transport, and its unacknowledged message is redelivered.
    transport = await jetstream_connect(nats_server.url)
    options = SubscriptionOptions(durable_name="d", ack_wait=0.5)
    started = asyncio.Event()

    async def stuck(message: TransportMessage) -> None:
        started.set()
        await asyncio.Event().wait()

    subscription = await transport.subscribe(SUBJECT, stuck, options)
    await transport.publish(SUBJECT, b"{}")
    await asyncio.wait_for(started.wait(), 10)
    loop = asyncio.get_running_loop()
    begun = loop.time()
    await subscription.close()
    assert loop.time() - begun < 1.0
    assert "still running when its subscription closed; abandoned" in caplog.text

    again = Collector()
    await transport.subscribe(SUBJECT, again, options)
    [message] = await again.wait_for_count(1)
    assert message.delivery_count == 2


async def test_a_raising_handler_is_logged_once_and_the_subscription_lives_on(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    transport = await jetstream_connect(nats_server.url)
    handled = Collector()

    async def handler(message: TransportMessage) -> None:
        if message.data == b'"bad"':
            raise RuntimeError("boom")
        await handled(message)

    await transport.subscribe(SUBJECT, handler, SubscriptionOptions(durable_name="d"))
    await transport.publish(SUBJECT, b'"bad"')
    await transport.publish(SUBJECT, b'"good"')
    [message] = await handled.wait_for_count(1)
    assert message.data == b'"good"'
    raised = [record for record in caplog.records if record.exc_info]
    assert len(raised) == 1
    assert raised[0].getMessage().startswith(f"handler for {SUBJECT} raised;")


async def test_a_handler_may_close_its_own_subscription(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url)
    closed = asyncio.Event()
    subscriptions: list[TransportSubscription] = []

    async def handler(message: TransportMessage) -> None:
        await message.ack()
        await subscriptions[0].close()
        closed.set()

    subscriptions.append(
        await transport.subscribe(SUBJECT, handler, SubscriptionOptions(durable_name="d"))
    )
    await transport.publish(SUBJECT, b"{}")
    await asyncio.wait_for(closed.wait(), 10)
    await transport.publish(SUBJECT, b"{}")
    # The durable stays, and got the second message to keep for its return.
    later = Collector()
    await transport.subscribe(SUBJECT, later, SubscriptionOptions(durable_name="d"))
    [message] = await later.wait_for_count(1)
    assert message.sequence == 2


async def test_the_deprecated_close_timeout_is_accepted_and_ignored(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    with pytest.warns(DeprecationWarning, match="close_timeout"):
        transport = await jetstream_connect(nats_server.url, close_timeout=30.0)
    assert (await transport.publish(SUBJECT, b"{}")).sequence == 1
