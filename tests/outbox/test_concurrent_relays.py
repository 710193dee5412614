"""Several relays on one database publish each event once, each aggregate in order.

PostgreSQL: the relays share the rows through row locks (``FOR UPDATE SKIP LOCKED``);
SQLite: one relay holds the lease, the others stand by and take over when it stops.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from common_events import Bus, connect
from common_events.embedded import EmbeddedNatsServer
from common_events.outbox import (
    Backoff,
    Outbox,
    OutboxRecord,
    OutboxRelay,
    RelayState,
    create_tables,
)
from tests.outbox.support import (
    Received,
    Ticket,
    close_all,
    create_service_tables,
    eventually,
    record_tickets,
    ticket_event,
)

TICKETS = 30
VERSIONS = 20  # 600 events


async def write_versions(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, ticket_ids: list[str]
) -> None:
    """Each ticket created, then updated up to VERSIONS - 1, one transaction each."""
    for version in range(VERSIONS):
        for ticket_id in ticket_ids:
            async with sessions.begin() as session:
                if version == 0:
                    session.add(Ticket(id=ticket_id, title="show", price=1))
                else:
                    ticket = await session.get(Ticket, ticket_id, with_for_update=True)
                    assert ticket is not None
                    ticket.version = version
                outbox.add(session, ticket_event(ticket_id, version))


def assert_each_once_in_order(received: Received) -> None:
    events = received.events()
    assert len(events) == TICKETS * VERSIONS, f"lost: {TICKETS * VERSIONS - len(events)}"
    assert max(events.values()) == 1, [event for event, n in events.items() if n > 1]
    assert max(received.message_ids().values()) == 1
    versions: dict[str, list[int]] = defaultdict(list)
    for delivery in sorted(received.deliveries, key=lambda delivery: delivery.sequence):
        if delivery.version not in versions[delivery.ticket_id]:
            versions[delivery.ticket_id].append(delivery.version)
    assert all(found == list(range(VERSIONS)) for found in versions.values()), versions


@pytest.fixture
async def jetstream_bus(jetstream_server: EmbeddedNatsServer) -> AsyncIterator[Bus]:
    bus = await connect(jetstream_server.url)
    yield bus
    await bus.close()


async def run_relays_under_load(
    url: str, jetstream_server: EmbeddedNatsServer, relays: int
) -> list[OutboxRelay]:
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    await create_service_tables(engine)
    received = Received()
    buses = [await connect(jetstream_server.url) for _ in range(relays)]
    engines = [create_async_engine(url) for _ in range(relays)]
    started = [
        OutboxRelay(
            bus,
            relay_engine,
            batch_size=25,
            poll_interval=0.05,
            lease_ttl=2.0,
            backoff=Backoff(initial=0.05, maximum=0.5),
        )
        for bus, relay_engine in zip(buses, engines, strict=True)
    ]
    listeners = await record_tickets(buses[0], received)
    try:
        for relay in started:
            await relay.start()
        outbox = Outbox()
        writers = [
            write_versions(sessions, outbox, [f"t{n}" for n in range(w, TICKETS, 3)])
            for w in range(3)
        ]
        await asyncio.gather(*writers)
        await received.wait_for(TICKETS * VERSIONS, timeout=60)
    finally:
        for relay in started:
            await relay.close()
        await close_all(listeners)
        for bus in buses:
            await bus.close()
        for relay_engine in engines:
            await relay_engine.dispose()
    assert_each_once_in_order(received)
    assert await started[0].pending() == 0
    await engine.dispose()
    return started


async def test_three_relays_share_the_rows_on_postgresql(
    postgres_url: str, jetstream_server: EmbeddedNatsServer
) -> None:
    engine = create_async_engine(postgres_url)
    await create_tables(engine)
    await engine.dispose()
    relays = await run_relays_under_load(postgres_url, jetstream_server, 3)
    assert {relay.claim for relay in relays} == {"row-lock"}
    assert sum(relay.published for relay in relays) == TICKETS * VERSIONS
    # Row locks kept them apart: not one repeat reached the broker's de-duplication.
    assert sum(relay.duplicates for relay in relays) == 0
    print("published per relay:", [relay.published for relay in relays])


async def test_two_relays_take_turns_by_the_lease_on_sqlite(
    tmp_path: Path, jetstream_server: EmbeddedNatsServer
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    engine = create_async_engine(url)
    await create_tables(engine)
    await engine.dispose()
    relays = await run_relays_under_load(url, jetstream_server, 2)
    assert {relay.claim for relay in relays} == {"lease"}
    assert sum(relay.published for relay in relays) == TICKETS * VERSIONS
    assert sum(relay.duplicates for relay in relays) == 0


async def test_a_standby_relay_takes_over_the_lease(tmp_path: Path, jetstream_bus: Bus) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    engine = create_async_engine(url)
    await create_tables(engine)
    await create_service_tables(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    outbox = Outbox()
    received = Received()
    listeners = await record_tickets(jetstream_bus, received)
    first = OutboxRelay(jetstream_bus, engine, outbox=outbox, poll_interval=0.05, lease_ttl=1.0)
    second = OutboxRelay(jetstream_bus, engine, outbox=outbox, poll_interval=0.05, lease_ttl=1.0)
    await first.start()
    await eventually(lambda: first.state is RelayState.PUBLISHING, 5, "first publishes")
    await second.start()
    await eventually(lambda: second.state is RelayState.STANDBY, 5, "second stands by")
    await write_versions(sessions, outbox, ["a"])
    await received.wait_for(VERSIONS, timeout=10)
    await eventually(lambda: first.published == VERSIONS, 5, "first counted its publishes")
    assert second.published == 0

    await first.close()  # gives the lease up
    await eventually(lambda: second.state is RelayState.PUBLISHING, 5, "second takes over")
    await write_versions(sessions, outbox, ["b"])
    await received.wait_for(2 * VERSIONS, timeout=10)
    await eventually(lambda: second.published == VERSIONS, 5, "second counted its publishes")
    assert first.published == VERSIONS
    await second.close()
    await close_all(listeners)
    await engine.dispose()


async def test_rows_wait_for_an_earlier_row_of_their_aggregate_locked_elsewhere(
    postgres_url: str, jetstream_bus: Bus
) -> None:
    """Another relay holds (and is publishing) ticket a's first event: this relay
    publishes ticket b's events, and leaves a's later events for after it."""
    engine = create_async_engine(postgres_url)
    await create_tables(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    outbox = Outbox()
    async with sessions.begin() as session:
        for version in range(3):
            outbox.add(session, ticket_event("a", version))
            outbox.add(session, ticket_event("b", version))
    relay = OutboxRelay(jetstream_bus, engine)
    async with engine.connect() as other, other.begin():
        first = await other.scalar(
            select(OutboxRecord.id).order_by(OutboxRecord.id).limit(1).with_for_update()
        )
        assert await relay.publish_pending() == 3  # b0, b1, b2
    assert await relay.publish_pending() == 3  # a0 (released), a1, a2
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(OutboxRecord.id, OutboxRecord.aggregate).order_by(OutboxRecord.sent_at)
            )
        ).all()
    assert first == rows[3].id
    assert [aggregate for _, aggregate in rows] == ["b", "b", "b", "a", "a", "a"]
    await engine.dispose()
