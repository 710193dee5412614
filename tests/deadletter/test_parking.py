"""JetStream: a message whose dead-letter record cannot be stored is parked, and a parked
message widens the consumer's window instead of holding one of its slots.

Against a real nats-server: the consumer's ``max_ack_pending`` and metadata are read from
the server itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import nats
from nats.js import api

from common_events import Bus, connect, encode_event
from common_events.testing.servers import EmbeddedNatsServer, StanServer
from common_events.transports import jetstream
from common_events.transports.jetstream.parking import (
    MAX_PARKED,
    PARKED_KEY,
    merge_parked,
    parse_parked,
    window,
    with_parked,
)
from tests.deadletter.support import (
    DEAD_LETTERS,
    SUBJECT,
    DeadLetterReader,
    FailingDeadLetters,
    publish_raw,
    ticket,
)
from tests.deadletter.test_unpublishable import POISON, TwoSlots
from tests.fixtures.jetstream import ServerFactory
from tests.support.logs import LogLines, attached

# -- the rules, without a server ---------------------------------------------------------


def test_the_parked_set_reads_back_what_was_written() -> None:
    metadata = with_parked({"owner": "billing"}, [30, 4, 17])
    assert metadata == {"owner": "billing", PARKED_KEY: "4,17,30"}
    assert parse_parked(metadata) == {4, 17, 30}
    assert with_parked(metadata, []) == {"owner": "billing"}


def test_a_garbled_parked_set_is_read_as_what_can_be_read() -> None:
    assert parse_parked({PARKED_KEY: "5, x,,-3,9"}) == {5, 9}
    assert parse_parked(None) == frozenset()


def test_merging_adds_ours_removes_what_we_settled_and_what_the_floor_passed() -> None:
    merged = merge_parked({3, 8, 12}, parked_here={20}, settled_here={12}, ack_floor=3)
    assert merged == {8, 20}


def test_the_window_grows_by_the_parked_messages_up_to_a_bound() -> None:
    assert window(16, 0) == 16
    assert window(16, 5) == 21
    assert window(16, MAX_PARKED + 50) == 16 + MAX_PARKED


T = TypeVar("T")


# -- on a real server --------------------------------------------------------------------


async def listener_consumer(url: str) -> api.ConsumerConfig:
    connection = await nats.connect(url)
    try:
        for info in await connection.jsm().consumers_info("EVENTS"):
            if info.config.filter_subject == SUBJECT:
                return info.config
        raise AssertionError("no consumer on ticket:created")
    finally:
        await connection.close()


async def polled(
    read: Callable[[], Awaitable[T]], check: Callable[[T], object], within: float
) -> T:
    """What ``read()`` gives once ``check`` holds for it, read again every 0.1 s: the
    server sends nothing when a consumer's or a subscription's settings change."""
    deadline = time.monotonic() + within
    while not check(state := await read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never got there: {state}")
        await asyncio.sleep(0.1)
    return state


async def eventually(
    check: Callable[[api.ConsumerConfig], object], url: str, within: float
) -> api.ConsumerConfig:
    """The listener's consumer once ``check(config)`` holds, polled on the server."""
    return await polled(lambda: listener_consumer(url), check, within)


@dataclass
class FourParked:
    """Four poison messages that cannot be dead-lettered, then three events, on a
    listener with two slots: the three are handled only if the four hold no slot."""

    failing: FailingDeadLetters
    reader: DeadLetterReader
    listener: TwoSlots
    bus: Bus

    @classmethod
    async def handled_past(cls, inner: Bus) -> FourParked:
        failing = FailingDeadLetters(inner.transport)
        bus = Bus(failing)  # type: ignore[arg-type]
        parked = cls(failing, DeadLetterReader(), TwoSlots(bus), bus)
        await parked.reader.start(inner)
        await parked.listener.listen()
        await publish_raw(inner, [POISON] * 4 + [encode_event(ticket(n)) for n in range(3)])
        await parked.listener.wait_until(lambda: len(parked.listener.handled) == 3, within=20)
        assert parked.reader.messages == [], "the poison messages are not dead-lettered yet"
        return parked


async def test_parked_messages_widen_the_window_until_their_records_are_stored(
    nats_server: EmbeddedNatsServer,
) -> None:
    inner = Bus(await jetstream.connect(nats_server.url, subjects=(SUBJECT, DEAD_LETTERS)))
    try:
        parked = await FourParked.handled_past(inner)
        failing, reader, listener = parked.failing, parked.reader, parked.listener
        config = await eventually(lambda c: c.max_ack_pending == 2 + 4, nats_server.url, within=10)
        assert parse_parked(config.metadata) == {1, 2, 3, 4}

        failing.failing = False
        await reader.wait_for(4, within=20)
        config = await eventually(lambda c: c.max_ack_pending == 2, nats_server.url, within=15)
        assert parse_parked(config.metadata) == frozenset()
        await listener.close()
    finally:
        await inner.close()


async def test_a_listener_that_binds_again_keeps_the_window_wide(
    nats_server: EmbeddedNatsServer,
) -> None:
    first = Bus(
        FailingDeadLetters(  # type: ignore[arg-type]
            await jetstream.connect(nats_server.url, subjects=(SUBJECT, DEAD_LETTERS))
        )
    )
    listener = await TwoSlots(first).listen()
    await publish_raw(first, [POISON] * 3)
    await eventually(lambda c: c.max_ack_pending == 2 + 3, nats_server.url, within=15)
    await listener.close()
    await first.close()

    # A restarted service binds with max_in_flight 2 again: the parked three stay counted.
    failing = FailingDeadLetters(
        await jetstream.connect(nats_server.url, subjects=(SUBJECT, DEAD_LETTERS))
    )
    second = Bus(failing)  # type: ignore[arg-type]
    try:
        reader = DeadLetterReader()
        await reader.start(second)
        restarted = await TwoSlots(second).listen()
        config = await listener_consumer(nats_server.url)
        assert config.max_ack_pending == 2 + 3
        assert parse_parked(config.metadata) == {1, 2, 3}
        # Its dead-letter subject works again: the three are stored and the window narrows.
        failing.failing = False
        await reader.wait_for(3, within=30)
        await eventually(lambda c: c.max_ack_pending == 2, nats_server.url, within=15)
        await restarted.close()
    finally:
        await second.close()


async def test_members_of_a_queue_group_widen_one_window_together(
    nats_server: EmbeddedNatsServer,
) -> None:
    buses = [
        Bus(
            FailingDeadLetters(  # type: ignore[arg-type]
                await jetstream.connect(nats_server.url, subjects=(SUBJECT, DEAD_LETTERS))
            )
        )
        for _ in range(2)
    ]
    try:
        listeners = [await TwoSlots(bus).listen() for bus in buses]
        await publish_raw(buses[0], [POISON] * 6 + [encode_event(ticket(n)) for n in range(4)])

        def handled() -> int:
            return sum(len(listener.handled) for listener in listeners)

        for listener in listeners:
            await listener.wait_until(lambda: handled() == 4, within=30)
        # Whoever parked which, the shared consumer counts all six.
        config = await eventually(
            lambda c: parse_parked(c.metadata) == set(range(1, 7)) and c.max_ack_pending == 8,
            nats_server.url,
            within=15,
        )
        assert config.max_ack_pending == 2 + 6
        for listener in listeners:
            await listener.close()
    finally:
        for bus in buses:
            await bus.close()


MAY_NOT_UPDATE_CONSUMERS = """
authorization {
  users = [
    { user: admin, password: admin-pw },
    {
      user: service, password: service-pw,
      permissions: {
        publish: {
          allow: [">"],
          deny: ["$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>"]
        },
        subscribe: { allow: [">"] }
      }
    }
  ]
}
"""


async def test_a_user_who_may_not_update_consumers_keeps_the_window_and_is_told(
    nats_server_factory: ServerFactory,
) -> None:
    server = await nats_server_factory(MAY_NOT_UPDATE_CONSUMERS)
    admin_url = server.url.replace("nats://", "nats://admin:admin-pw@")
    service_url = server.url.replace("nats://", "nats://service:service-pw@")
    # The consumer as an administrator made it: the service binds to it as it is. The
    # administrator also reads the dead letters (a reader makes a consumer of its own).
    admin = Bus(await jetstream.connect(admin_url, subjects=(SUBJECT, DEAD_LETTERS)))
    await (await TwoSlots(admin).listen()).close()
    reader = DeadLetterReader()
    await reader.start(admin)

    failing = FailingDeadLetters(
        await jetstream.connect(service_url, subjects=(SUBJECT, DEAD_LETTERS))
    )
    bus = Bus(failing)  # type: ignore[arg-type]
    parking = "common_events.transports.jetstream.parking"
    try:
        with attached(LogLines(logging.WARNING), parking, logging.WARNING) as warnings:
            listener = await TwoSlots(bus).listen()
            await publish_raw(bus, [POISON] * 2 + [encode_event(ticket(1))])

            await warnings.wait_for("could not update its parked", within=15)
            [line] = warnings.with_text("could not update")
            assert "the window stays as it is" in line and "permissions violation" in line
            # Both parked messages come back and are parked again, each in its slot: the
            # window is still 2 on the server, and the event behind them waits.
            await listener.wait_until(
                lambda: min(listener.deliveries.get(n, 0) for n in (1, 2)) >= 3, within=15
            )
            config = await listener_consumer(admin_url)
            assert config.max_ack_pending == 2 and parse_parked(config.metadata) == frozenset()
            assert listener.handled == []

            # Nothing was acknowledged for it: once records can be stored, all three go on.
            failing.failing = False
            await reader.wait_for(2, within=20)
            await listener.wait_until(lambda: listener.handled == ["t1"], within=20)
            assert len(warnings.with_text("could not update")) == 1
            await listener.close()
    finally:
        await bus.close()
        await admin.close()


# -- NATS Streaming ----------------------------------------------------------------------


def stan_windows(server: StanServer) -> list[int]:
    """``max_inflight`` of every subscription on ticket:created, as the server has it."""
    channel = server.monitor(f"/streaming/channelsz?subs=1&channel={SUBJECT}")
    return [sub["max_inflight"] for sub in channel.get("subscriptions") or []]


async def stan_eventually(check: Callable[[list[int]], bool], server: StanServer) -> list[int]:
    return await polled(lambda: asyncio.to_thread(stan_windows, server), check, within=15)


async def test_stan_makes_a_durable_again_with_a_window_wide_enough_for_its_parked(
    stan_server: StanServer,
) -> None:
    inner = await connect(stan_server.url, cluster_id=stan_server.cluster_id)
    try:
        parked = await FourParked.handled_past(inner)
        failing, reader, listener = parked.failing, parked.reader, parked.listener
        # Still the one durable queue member, with room for its parked messages.
        (wide,) = await stan_eventually(lambda w: len(w) == 1 and w[0] >= 2 + 4, stan_server)
        assert wide <= 2 + 2 * 4

        failing.failing = False
        await reader.wait_for(4, within=20)
        assert await stan_eventually(lambda w: w == [2], stan_server) == [2]
        assert sorted(listener.handled) == ["t0", "t1", "t2"], "nothing handled twice"
        # Deliveries left unhandled while the durable was made again are not counted.
        assert all(listener.deliveries[sequence] == 1 for sequence in (5, 6, 7))
        assert len(reader.messages) == 4, "only the poison messages are dead-lettered"
        await listener.close()
    finally:
        await inner.close()


class NotDurable(TwoSlots):
    durable = False


async def test_stan_a_subscription_that_is_not_durable_keeps_its_window(
    stan_server: StanServer,
) -> None:
    """Made again, it would lose its place: its parked messages hold their slots."""
    inner = await connect(stan_server.url, cluster_id=stan_server.cluster_id)
    failing = FailingDeadLetters(inner.transport)
    bus = Bus(failing)  # type: ignore[arg-type]
    try:
        listener = await NotDurable(bus).listen()
        await publish_raw(inner, [POISON] * 2 + [encode_event(ticket(1))])
        await listener.wait_until(lambda: listener.deliveries.get(2, 0) >= 2, within=15)
        assert stan_windows(stan_server) == [2]
        assert listener.handled == []
        await listener.close()
    finally:
        await bus.close()
        await inner.close()
