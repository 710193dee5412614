"""A message whose dead-letter publish fails for any reason but its size is neither
acknowledged nor lost, and the listener keeps handling other messages.

Against real brokers: a JetStream stream that does not store the dead-letter subject,
a JetStream user who may not publish on it, and a transport in front of each broker that
refuses dead-letter publishes until the test lets them through.
"""

from __future__ import annotations

import dataclasses

import nats
import pytest
from nats.js import api

from common_events import Bus, encode_event
from common_events.core.policy import FailurePolicy
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports import jetstream
from common_events.transports.base import SubscriptionOptions
from common_events.transports.jetstream.consumers import plan_consumer
from tests.deadletter.conftest import ConnectBus
from tests.deadletter.support import (
    DEAD_LETTERS,
    SUBJECT,
    DeadLetterReader,
    FailingDeadLetters,
    Recording,
    publish_raw,
    ticket,
)

POISON = b"{not json"
RETRY_DELAY = 0.3
"""The tests' wait before a message whose dead-letter publish failed comes back."""


class QuickRetry(Recording):
    """Comes back soon after a failed dead-letter publish, where the broker allows it."""

    ack_wait = 1.0
    max_deliveries = 2

    @property
    def failure_policy(self) -> FailurePolicy:
        return dataclasses.replace(super().failure_policy, dead_letter_retry_delay=RETRY_DELAY)


class TwoSlots(QuickRetry):
    max_in_flight = 2


async def stream_without_dead_letters(url: str) -> None:
    connection = await nats.connect(url)
    try:
        await connection.jsm().add_stream(
            api.StreamConfig(name="EVENTS", subjects=[SUBJECT], storage=api.StorageType.FILE)
        )
    finally:
        await connection.close()


async def store_dead_letters(url: str) -> None:
    connection = await nats.connect(url)
    try:
        jsm = connection.jsm()
        config = (await jsm.stream_info("EVENTS")).config
        config.subjects = [SUBJECT, DEAD_LETTERS]
        await jsm.update_stream(config)
    finally:
        await connection.close()


async def test_jetstream_keeps_a_message_whose_dead_letter_subject_is_not_stored(
    nats_server: EmbeddedNatsServer,
) -> None:
    await stream_without_dead_letters(nats_server.url)
    bus = Bus(await jetstream.connect(nats_server.url))  # the stream as it is
    try:
        listener = await QuickRetry(bus).listen()
        await publish_raw(bus, [POISON, encode_event(ticket(1))])

        # The server's own limit would have given up after max_deliveries + 1.
        await listener.wait_until(
            lambda: listener.deliveries.get(1, 0) >= QuickRetry.max_deliveries + 3, within=15
        )
        assert listener.handled == ["t1"], "the event behind it is handled meanwhile"

        await store_dead_letters(nats_server.url)
        reader = DeadLetterReader()
        await reader.start(bus)
        await reader.wait_for(1, within=15)
        await listener.close()
    finally:
        await bus.close()


NO_DEAD_LETTERS_CONFIG = """
authorization {
  users = [
    {
      user: service, password: service-pw,
      permissions: {
        publish: { allow: [">"], deny: ["dead-letter:ticket:created"] },
        subscribe: { allow: [">"] }
      }
    }
  ]
}
"""


async def test_jetstream_keeps_a_message_its_user_may_not_dead_letter(
    nats_server_factory: object,
) -> None:
    server = await nats_server_factory(NO_DEAD_LETTERS_CONFIG)  # type: ignore[operator]
    url = server.url.replace("nats://", "nats://service:service-pw@")
    bus = Bus(await jetstream.connect(url, subjects=(SUBJECT, DEAD_LETTERS)))
    try:
        listener = await QuickRetry(bus).listen()
        await publish_raw(bus, [POISON, encode_event(ticket(1))])

        await listener.wait_until(
            lambda: listener.deliveries.get(1, 0) >= QuickRetry.max_deliveries + 3, within=15
        )
        assert listener.handled == ["t1"]
        await listener.close()
    finally:
        await bus.close()


@pytest.mark.parametrize("poisons", [1])
async def test_a_message_that_cannot_be_dead_lettered_comes_back_until_it_can(
    connect_bus: ConnectBus, poisons: int
) -> None:
    inner = await connect_bus()
    failing = FailingDeadLetters(inner.transport)
    bus = Bus(failing)  # type: ignore[arg-type]
    reader = DeadLetterReader()
    await reader.start(inner)
    listener = await TwoSlots(bus).listen()

    await publish_raw(inner, [POISON, *(encode_event(ticket(n)) for n in range(5))])

    await listener.wait_until(
        lambda: len(listener.handled) == 5 and listener.deliveries.get(1, 0) >= 3, within=15
    )
    assert reader.messages == []
    failing.failing = False
    await reader.wait_for(1, within=15)
    await listener.close()


async def test_more_undeliverable_messages_than_slots(connect_bus: ConnectBus) -> None:
    """Memory frees the slot of a message handed back with a delay; JetStream widens the
    consumer's window by the messages parked, and NATS Streaming makes the durable
    subscription again with a wider window."""
    inner = await connect_bus()
    failing = FailingDeadLetters(inner.transport)
    bus = Bus(failing)  # type: ignore[arg-type]
    reader = DeadLetterReader()
    await reader.start(inner)
    listener = await TwoSlots(bus).listen()

    await publish_raw(inner, [POISON, POISON, POISON, *(encode_event(ticket(n)) for n in range(3))])

    await listener.wait_until(lambda: len(listener.handled) == 3, within=15)
    assert reader.messages == [], "the poison messages are not dead-lettered yet"
    failing.failing = False
    await reader.wait_for(3, within=20)
    await listener.wait_until(lambda: len(listener.handled) == 3, within=15)
    await listener.close()


async def test_a_consumer_made_with_a_server_side_limit_loses_it(
    nats_server: EmbeddedNatsServer,
) -> None:
    # Made as versions before this one made it: max_deliver = max_deliveries + 1.
    transport = await jetstream.connect(nats_server.url, subjects=(SUBJECT, DEAD_LETTERS))
    try:
        options = SubscriptionOptions(
            queue_group="dead-letter-tests", durable_name="dead-letter-tests", max_deliveries=3
        )
        plan = dataclasses.replace(
            plan_consumer(
                SUBJECT,
                options,
                stream="EVENTS",
                deliver_prefix=transport.options.deliver_prefix,
                ephemeral_inactive_threshold=5.0,
            ),
            max_deliver=4,
        )
        await transport.admin.bind_consumer(plan)
        assert (await consumer_config(nats_server.url, plan.name)).max_deliver == 4

        listener = await QuickRetry(Bus(transport)).listen()
        await listener.close()

        assert (await consumer_config(nats_server.url, plan.name)).max_deliver == -1
    finally:
        await transport.close()


async def consumer_config(url: str, name: str) -> api.ConsumerConfig:
    connection = await nats.connect(url)
    try:
        return (await connection.jsm().consumer_info("EVENTS", name)).config
    finally:
        await connection.close()
