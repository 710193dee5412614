"""``run_service(..., companions=[relay])`` starts the relay with the listeners and closes
it before the connection."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common_events import connect, run_service
from common_events.outbox import Outbox, OutboxRelay, RelayState
from tests.outbox.support import (
    Received,
    Ticket,
    TicketCreatedRecorder,
    create_service_tables,
    eventually,
    ticket_event,
)


async def test_run_service_starts_and_closes_the_relay(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create_service_tables(engine)
    outbox = Outbox()
    received = Received()
    bus = await connect("memory://")
    relay = OutboxRelay(bus, engine, outbox=outbox, poll_interval=60)
    stop = asyncio.Event()
    listener = TicketCreatedRecorder(bus, received)
    service = asyncio.create_task(
        run_service(bus, listener, companions=[relay], stop=stop, signals=())
    )
    try:
        await eventually(lambda: relay.running, 10, "run_service started the relay")
        async with sessions.begin() as session:
            session.add(Ticket(id="t1", title="show", price=1))
            outbox.add(session, ticket_event("t1"))
        await received.wait_for(1, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(service, timeout=30)
    assert not relay.running
    assert relay.state is RelayState.STOPPED
    assert bus.closed
