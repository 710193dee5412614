"""``common-events migrate`` against real servers: the copy, the positions, a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from collections import Counter
from typing import Any

import pytest

from common_events.core import Bus, Listener, Message, connect
from common_events.events import (
    Event,
    OrderCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.migration.jetstream_stream import EventStream
from common_events.migration.origin import CHANNEL_HEADER, SEQUENCE_HEADER, TIMESTAMP_HEADER
from common_events.testing.servers import EmbeddedNatsServer, StanServer
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.stan import StanTransport
from tests.migration.conftest import CliProcess, migrate_args, run_cli, until
from tests.migration.events import SUBJECTS, payload

pytestmark = pytest.mark.timeout(180)


async def publish(stan: StanTransport, subject: str, ids: list[str]) -> None:
    results = await stan.publish_many(subject, [payload(subject, i) for i in ids])
    assert not [r for r in results if isinstance(r, Exception)]


def collecting_listener(event: type[Event], group: str, seen: Counter[str]) -> type[Listener[Any]]:
    class Collecting(Listener[event]):  # type: ignore[valid-type]
        queue_group = group

        async def on_message(self, received: Event, msg: Message) -> None:
            seen[str(getattr(received, "id", None) or received.order_id)] += 1
            await msg.ack()

    Collecting.__name__ = f"{group}-{event.__name__}"
    return Collecting


async def consume_on_stan(
    url: str, cluster_id: str, group: str, events: list[type[Event]], expected: int
) -> None:
    """Run a durable queue group on STAN until it acknowledged ``expected`` messages."""
    seen: Counter[str] = Counter()
    bus = await connect(url, cluster_id=cluster_id)
    listeners = [collecting_listener(event, group, seen)(bus) for event in events]
    try:
        for listener in listeners:
            await listener.listen()
        await until(lambda: sum(seen.values()) >= expected, 60, f"{group} on STAN")
    finally:
        for listener in listeners:
            await listener.close()
        await bus.close()


def groups_settled(stan: StanServer, groups: set[str]) -> bool:
    """Every durable of ``groups`` is offline with nothing unacknowledged."""
    channels = stan.monitor("/streaming/channelsz?subs=1")["channels"] or []
    for channel in channels:
        for sub in channel.get("subscriptions") or []:
            group = (sub.get("queue_name") or "").split(":")[-1]
            if group in groups and (not sub["is_offline"] or sub["pending_count"]):
                return False
    return True


async def consumers_drained(js: JetStreamTransport, names: list[str]) -> bool:
    jsm = js.client.jsm()
    for name in names:
        info = await jsm.consumer_info(js.stream, name)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def test_ten_thousand_events_and_two_groups_at_different_positions(
    stan: StanServer,
    stan_client: StanTransport,
    nats_server: EmbeddedNatsServer,
    js: JetStreamTransport,
    stream: EventStream,
) -> None:
    # Three phases over the six subjects, 10,000 events in all. search-service stops
    # after the first, orders-service after the second.
    phases: list[dict[str, list[str]]] = [{}, {}, {}]
    for index, subject in enumerate(SUBJECTS):
        sizes = (700, 500, 467 if index < 4 else 466)
        for phase, size in enumerate(sizes):
            phases[phase][subject] = [f"p{phase + 1}-{subject}-{n}" for n in range(size)]
    assert sum(len(ids) for phase in phases for ids in phase.values()) == 10_000

    for subject, ids in phases[0].items():
        await publish(stan_client, subject, ids)
    await consume_on_stan(
        stan.url, stan.cluster_id, "search-service", [TicketCreatedEvent, TicketUpdatedEvent],
        expected=1400,
    )  # fmt: skip
    for subject, ids in phases[1].items():
        await publish(stan_client, subject, ids)
    await consume_on_stan(
        stan.url, stan.cluster_id, "orders-service", [TicketCreatedEvent, OrderCreatedEvent],
        expected=2400,
    )  # fmt: skip
    for subject, ids in phases[2].items():
        await publish(stan_client, subject, ids)
    await until(lambda: groups_settled(stan, {"search-service", "orders-service"}), 15)

    started = asyncio.get_running_loop().time()
    result = await run_cli(*migrate_args(stan, nats_server))
    took = asyncio.get_running_loop().time() - started
    assert result.status == 0, result.stdout + result.stderr
    assert "10000 message(s) copied" in result.stdout
    assert "every subject matches" in result.stdout
    for subject in SUBJECTS:
        assert re.search(rf"^{re.escape(subject)}\s+\d+\s+\d+\s+\d+\s+(\w+)\s+\1\s+ok$",
                         result.stdout, re.MULTILINE), result.stdout  # fmt: skip
    print(f"migrate of 10,000 events took {took:.1f}s:\n{result.stdout}\n{result.stderr}")

    # Python listeners on JetStream resume exactly after each group's position.
    search: Counter[str] = Counter()
    orders: Counter[str] = Counter()
    bus = Bus(js)
    listeners = [
        collecting_listener(TicketCreatedEvent, "search-service", search)(bus),
        collecting_listener(TicketUpdatedEvent, "search-service", search)(bus),
        collecting_listener(TicketCreatedEvent, "orders-service", orders)(bus),
        collecting_listener(OrderCreatedEvent, "orders-service", orders)(bus),
    ]
    expected_search = {
        i for phase in phases[1:] for s in ("ticket:created", "ticket:updated") for i in phase[s]
    }
    expected_orders = {i for s in ("ticket:created", "order:created") for i in phases[2][s]}
    try:
        for listener in listeners:
            await listener.listen()
        await until(
            lambda: len(search) >= len(expected_search) and len(orders) >= len(expected_orders),
            60,
        )
        consumer_names = [sub.consumer_name for sub in _subscriptions(listeners)]
        await until(lambda: consumers_drained(js, consumer_names), 30)
    finally:
        for listener in listeners:
            await listener.close()
    assert set(search) == expected_search
    assert set(orders) == expected_orders
    assert max(search.values()) == 1 and max(orders.values()) == 1


def _subscriptions(listeners: list[Listener[Any]]) -> list[Any]:
    return [listener._subscription for listener in listeners]


async def test_migrate_killed_at_a_random_point_and_run_again(
    stan: StanServer,
    stan_client: StanTransport,
    nats_server: EmbeddedNatsServer,
    stream: EventStream,
    cli_processes: Any,
) -> None:
    per_subject = 2000
    for subject in SUBJECTS:
        await publish(stan_client, subject, [f"{subject}-{n}" for n in range(per_subject)])
    total = per_subject * len(SUBJECTS)
    seed = int(os.environ.get("MIGRATION_KILL_SEED", random.randrange(1 << 30)))
    kill_at = random.Random(seed).randrange(total // 10, total * 8 // 10)
    print(f"seed {seed}: SIGKILL once the stream holds {kill_at} of {total}")

    first: CliProcess = await cli_processes(*migrate_args(stan, nats_server, "--no-consumers"))
    await until(stream_holds(stream, kill_at), 60)
    first.kill()
    await first.wait()
    stored = await stream_total(stream)
    assert stored < total, "the first run had finished before it was killed"

    again = await run_cli(*migrate_args(stan, nats_server, "--no-consumers"))
    assert again.status == 0, again.stdout + again.stderr
    assert f"{total - stored} message(s) copied" in again.stdout, again.stdout
    for subject in SUBJECTS:
        origins = [m.origin async for m in stream.scan(subject)]
        assert origins == list(range(1, per_subject + 1)), subject

    # A third run finds everything copied: nothing twice.
    third = await run_cli(*migrate_args(stan, nats_server, "--no-consumers"))
    assert third.status == 0 and "0 message(s) copied" in third.stdout, third.stdout
    assert await stream_total(stream) == total


def stream_holds(stream: EventStream, count: int) -> Any:
    async def check() -> bool:
        try:
            return await stream_total(stream) >= count
        except Exception:  # the stream is created by the run being watched
            return False

    return check


async def stream_total(stream: EventStream) -> int:
    return sum([await stream.subject_count(subject) for subject in SUBJECTS])


async def test_copies_keep_payload_and_origin_and_bad_input_is_dead_lettered(
    stan: StanServer,
    stan_client: StanTransport,
    nats_server: EmbeddedNatsServer,
    js: JetStreamTransport,
    stream: EventStream,
) -> None:
    good = payload("ticket:created", "good-1")
    bad = [b"\xff\xfe not json", b'{"id":"x","price":"free"}', good]
    for data in bad:
        await stan_client.publish("ticket:created", data)
    result = await run_cli(*migrate_args(stan, nats_server, "--subject", "ticket:created"))
    assert result.status == 0, result.stdout + result.stderr

    copies = [m async for m in stream.scan("ticket:created")]
    assert [m.data for m in copies] == bad
    assert [m.origin for m in copies] == [1, 2, 3]
    assert all(m.headers[CHANNEL_HEADER] == "ticket:created" for m in copies)
    assert all(int(m.headers[TIMESTAMP_HEADER]) > 0 for m in copies)
    assert copies[0].headers["Nats-Msg-Id"] == f"stan:{stan.cluster_id}:ticket:created:1"
    assert copies[2].headers[SEQUENCE_HEADER] == "3"

    seen: Counter[str] = Counter()
    bus = Bus(js)
    listener = collecting_listener(TicketCreatedEvent, "orders-service", seen)(bus)
    await listener.listen()
    try:
        await until(lambda: seen["good-1"] == 1, 15)
        await until(dead_letters(stream, 2), 15)
    finally:
        await listener.close()
    letters = [json.loads(m.data) async for m in stream.scan("dead-letter:ticket:created")]
    assert sorted(letter["reason"] for letter in letters) == ["invalid_event", "invalid_json"]


def dead_letters(stream: EventStream, count: int) -> Any:
    async def check() -> bool:
        return await stream.subject_count("dead-letter:ticket:created") >= count

    return check
