"""The plan, the dry run, the refusals and ``--at-least-once``; the help texts."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from common_events.core import Bus
from common_events.errors import ConfigurationError
from common_events.events import TicketCreatedEvent
from common_events.migration.jetstream_stream import EventStream
from common_events.testing.servers import EmbeddedNatsServer, StanServer
from common_events.transports import jetstream
from common_events.transports.base import SubscriptionOptions
from common_events.transports.stan import StanMessage, StanTransport
from tests.migration.conftest import migrate_args, run_cli, until
from tests.migration.events import event_id, payload
from tests.migration.test_migrate import collecting_listener, publish

pytestmark = pytest.mark.timeout(120)

GROUP = SubscriptionOptions(queue_group="orders-service", durable_name="orders-service")


async def test_a_dry_run_prints_the_plan_and_changes_nothing(
    stan: StanServer, stan_client: StanTransport, nats_server: EmbeddedNatsServer
) -> None:
    await publish(stan_client, "ticket:created", [f"t{n}" for n in range(5)])
    acked: list[int] = []

    async def ack(message: StanMessage) -> None:
        acked.append(message.sequence)
        await message.ack()

    sub = await stan_client.subscribe("ticket:created", ack, GROUP)
    await until(lambda: len(acked) == 5)
    await sub.close()

    result = await run_cli(*migrate_args(stan, nats_server, "--dry-run"))
    assert result.status == 0, result.stderr
    assert "does not exist yet: it will be created" in result.stdout
    assert "Dry run: nothing was changed." in result.stdout
    assert "after the last acknowledged, #5" in result.stdout
    with pytest.raises(ConfigurationError):  # no stream was made
        await jetstream.connect(nats_server.url)


async def test_refuses_while_a_member_is_online_or_messages_are_unacknowledged(
    stan: StanServer,
    stan_client: StanTransport,
    nats_server: EmbeddedNatsServer,
    js: jetstream.JetStreamTransport,
    stream: EventStream,
) -> None:
    ids = [f"t{n}" for n in range(1, 11)]
    await publish(stan_client, "ticket:created", ids)
    seen: list[int] = []

    async def ack_all_but_the_third(message: StanMessage) -> None:
        seen.append(message.sequence)
        if message.sequence != 3:
            await message.ack()

    options = SubscriptionOptions(
        queue_group="orders-service", durable_name="orders-service", ack_wait=60
    )
    sub = await stan_client.subscribe("ticket:created", ack_all_but_the_third, options)
    await until(lambda: len(seen) >= 10)

    online = await run_cli(*migrate_args(stan, nats_server))
    assert online.status == 2, online.stdout + online.stderr
    assert "1 member(s) online" in online.stdout
    assert "stop that service" in online.stdout
    assert "--at-least-once" in online.stdout
    assert await stream.subject_count("ticket:created") == 0  # nothing copied

    await sub.close()
    pending = await run_cli(*migrate_args(stan, nats_server))
    assert pending.status == 2
    assert "1 message(s) unacknowledged" in pending.stdout

    # At least once: the consumer starts at the oldest unacknowledged message (#3),
    # read by joining the stopped group; nothing is acknowledged on STAN by that.
    result = await run_cli(*migrate_args(stan, nats_server, "--at-least-once"))
    assert result.status == 0, result.stdout + result.stderr
    assert "the oldest unacknowledged, #3" in result.stdout
    channel = stan.monitor("/streaming/channelsz?subs=1&channel=ticket:created")
    assert channel["subscriptions"][0]["pending_count"] == 1

    received: Counter[str] = Counter()
    listener = collecting_listener(TicketCreatedEvent, "orders-service", received)(Bus(js))
    await listener.listen()
    try:
        await until(lambda: len(received) == 8)
    finally:
        await listener.close()
    assert sorted(received) == sorted(ids[2:])


async def test_the_description_names_the_consumers_a_listener_binds_to(
    js: jetstream.JetStreamTransport,
) -> None:
    result = await run_cli(
        "migrate", "--describe-consumers", "orders-service", "--subject", "ticket:created"
    )
    assert result.status == 0, result.stderr
    description = json.loads(result.stdout)
    (consumer,) = description["consumers"]
    listener = collecting_listener(TicketCreatedEvent, "orders-service", Counter())(Bus(js))
    await listener.listen()
    try:
        info = await js.client.jsm().consumer_info(js.stream, consumer["name"])
    finally:
        await listener.close()
    config = consumer["config"]
    assert info.config.deliver_subject == config["deliver_subject"]
    assert info.config.deliver_group == config["deliver_group"] == "orders-service"
    assert info.config.ack_wait == config["ack_wait"] / 1e9
    assert info.config.max_ack_pending == config["max_ack_pending"]
    assert description["maxDeliveries"] == 10


@pytest.mark.parametrize("command", ["migrate", "bridge"])
async def test_help_explains_the_command(command: str) -> None:
    result = await run_cli(command, "--help")
    assert result.status == 0
    text = result.stdout
    assert "usage: common-events " + command in text
    assert "docs/migrating-to-jetstream.md" in text
    assert "examples:" in text
    if command == "migrate":
        for phrase in ("--dry-run", "--at-least-once", "Stan-Sequence", "SHA-256", "refuses"):
            assert phrase in text
    else:
        for phrase in ("--to-stan", "--to-jetstream", "SIGTERM", "never bridged both ways"):
            assert phrase in text


def test_payload_helpers_round_trip() -> None:
    assert event_id(payload("expiration:complete", "o-1")) == "o-1"


async def test_dead_letter_channels_are_copied_on_request(
    stan: StanServer,
    stan_client: StanTransport,
    nats_server: EmbeddedNatsServer,
    stream: EventStream,
) -> None:
    await publish(stan_client, "ticket:created", ["t1"])
    await stan_client.publish("dead-letter:ticket:created", b'{"reason":"invalid_json"}')
    without = await run_cli(*migrate_args(stan, nats_server, "--subject", "ticket:created"))
    assert without.status == 0 and "dead-letter:ticket:created" not in without.stdout
    result = await run_cli(
        *migrate_args(stan, nats_server, "--subject", "ticket:created", "--dead-letters")
    )
    assert result.status == 0, result.stdout + result.stderr
    assert "1 message(s) copied" in result.stdout
    assert [m.data async for m in stream.scan("dead-letter:ticket:created")] == [
        b'{"reason":"invalid_json"}'
    ]
