"""The outbox on real databases (SQLite file, PostgreSQL) and the in-memory bus."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common_events import Bus, connect
from common_events.outbox import (
    MESSAGE_ID_HEADER,
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


@pytest.fixture
async def bus() -> Bus:
    made = await connect("memory://")
    yield made
    await made.close()


async def write_tickets(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, count: int, *, start: int = 0
) -> list[str]:
    """One transaction per ticket: the ticket row and its ``ticket:created`` event."""
    message_ids = []
    for number in range(start, start + count):
        async with sessions.begin() as session:
            session.add(Ticket(id=f"t{number}", title="show", price=10))
            message_ids.append(outbox.add(session, ticket_event(f"t{number}")).message_id)
    return message_ids


async def unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(OutboxRecord).where(OutboxRecord.sent_at.is_(None))
        )
    return int(count or 0)


def test_importing_common_events_imports_neither_outbox_nor_sqlalchemy() -> None:
    code = (
        "import sys, common_events\n"
        "prefixes = ('sqlalchemy', 'common_events.outbox')\n"
        "loaded = [m for m in sys.modules if m.startswith(prefixes)]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_create_tables_twice_is_harmless(engine: AsyncEngine) -> None:
    await create_tables(engine)
    assert await unsent(engine) == 0


async def test_committed_events_are_published_in_order_with_a_stable_message_id(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], bus: Bus
) -> None:
    await create_service_tables(engine)
    outbox = Outbox()
    received = Received()
    listeners = await record_tickets(bus, received)
    message_ids = await write_tickets(sessions, outbox, 5)
    async with sessions.begin() as session:
        ticket = await session.get(Ticket, "t0")
        assert ticket is not None
        ticket.version = 1
        outbox.add(session, ticket_event("t0", 1))

    relay = OutboxRelay(bus, engine, batch_size=3)
    assert await relay.pending() == 6
    assert await relay.publish_pending() == 3
    assert await relay.publish_pending() == 3
    assert await relay.publish_pending() == 0
    await received.wait_for(6, timeout=5)

    created = [d for d in received.deliveries if d.subject == "ticket:created"]
    assert [d.ticket_id for d in created] == ["t0", "t1", "t2", "t3", "t4"]
    assert [d.message_id for d in created] == message_ids
    assert received.events()[("t0", 1)] == 1
    assert await unsent(engine) == 0
    assert relay.published == 6
    await close_all(listeners)


async def test_a_rolled_back_transaction_leaves_no_event(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], bus: Bus
) -> None:
    await create_service_tables(engine)
    outbox = Outbox()

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with sessions.begin() as session:
            session.add(Ticket(id="gone", title="show", price=10))
            outbox.add(session, ticket_event("gone"))
            await session.flush()  # the rows reach the database, then roll back
            raise Refused
    await write_tickets(sessions, outbox, 1)
    relay = OutboxRelay(bus, engine)
    assert await relay.publish_pending() == 1
    async with engine.connect() as connection:
        subjects = (await connection.execute(select(OutboxRecord.aggregate))).scalars().all()
    assert subjects == ["t0"]


async def test_a_running_relay_is_woken_by_the_commit(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], bus: Bus
) -> None:
    await create_service_tables(engine)
    outbox = Outbox()
    received = Received()
    listeners = await record_tickets(bus, received)
    # The poll interval is long: only the commit's wake-up can make this quick.
    relay = OutboxRelay(bus, engine, outbox=outbox, poll_interval=60)
    await relay.start()
    try:
        await write_tickets(sessions, outbox, 3)
        await received.wait_for(3, timeout=5)
        await eventually(lambda: relay.state is RelayState.PUBLISHING, 5, "publishing")
    finally:
        await relay.close()
    assert relay.state is RelayState.STOPPED
    assert not relay.running
    await close_all(listeners)


async def test_extra_headers_travel_with_the_message_id(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], bus: Bus
) -> None:
    outbox = Outbox()
    seen: list[dict[str, str]] = []
    arrived = asyncio.Event()

    async def handler(raw: object) -> None:
        seen.append(dict(raw.headers))  # type: ignore[attr-defined]
        await raw.ack()  # type: ignore[attr-defined]
        arrived.set()

    from common_events import SubscriptionOptions

    await bus.subscribe("ticket:created", handler, SubscriptionOptions())
    async with sessions.begin() as session:
        record = outbox.add(session, ticket_event("t1"), headers={"traceparent": "00-abc-def-01"})
    await OutboxRelay(bus, engine).publish_pending()
    await asyncio.wait_for(arrived.wait(), timeout=5)
    assert seen == [{"traceparent": "00-abc-def-01", MESSAGE_ID_HEADER: record.message_id}]


async def test_sent_rows_are_purged_after_the_retention(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], bus: Bus
) -> None:
    await create_service_tables(engine)
    outbox = Outbox()
    await write_tickets(sessions, outbox, 4)
    keeping = OutboxRelay(bus, engine, retention=None)
    assert await keeping.publish_pending() == 4
    assert await keeping.purge() == 0
    await write_tickets(sessions, outbox, 2, start=4)  # unsent: never purged

    relay = OutboxRelay(bus, engine, retention=timedelta(hours=1))
    assert await relay.purge() == 0  # sent just now: kept for the hour
    async with engine.begin() as connection:
        await connection.execute(
            update(OutboxRecord)
            .where(OutboxRecord.sent_at.is_not(None))
            .values(sent_at=datetime.now(UTC) - timedelta(hours=2))
        )
    assert await relay.purge() == 4
    assert await relay.pending() == 2
