"""The broker is down for 10 s while 200 events are committed: the relay backs off,
says so once, publishes everything once the broker is back, and the service stays up."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common_events import connect, run_service
from common_events.embedded import EmbeddedNatsServer
from common_events.outbox import Backoff, Outbox, OutboxRelay, RelayState
from tests.outbox.support import (
    Received,
    Ticket,
    TicketCreatedRecorder,
    create_service_tables,
    eventually,
    ticket_event,
)

OUTAGE = 10.0
EVENTS = 200


async def test_relay_backs_off_while_the_broker_is_down_then_delivers_everything(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    jetstream_server: EmbeddedNatsServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="common_events.outbox.relay")
    await create_service_tables(engine)
    outbox = Outbox()
    received = Received()
    # A short publish timeout: each attempt while the server is away fails in a second.
    bus = await connect(jetstream_server.url, publish_timeout=1.0, publish_attempt_timeout=0.5)
    listener = TicketCreatedRecorder(bus, received)
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(bus, listener, stop=stop, signals=()))
    relay = OutboxRelay(
        bus, engine, outbox=outbox, poll_interval=0.2, backoff=Backoff(initial=0.1, maximum=1.0)
    )
    await relay.start()  # run_service(relays=...) will do this
    try:
        async with sessions.begin() as session:
            session.add(Ticket(id="before", title="show", price=1))
            outbox.add(session, ticket_event("before"))
        await received.wait_for(1, timeout=10)

        await jetstream_server.stop()
        outage_ends = time.monotonic() + OUTAGE
        for number in range(EVENTS):
            async with sessions.begin() as session:
                session.add(Ticket(id=f"t{number}", title="show", price=1))
                outbox.add(session, ticket_event(f"t{number}"))
            # The commits are spread over the outage: the workload, not a wait.
            await asyncio.sleep(max(0.0, (outage_ends - time.monotonic()) / (EVENTS - number)))
        await eventually(lambda: relay.state is RelayState.BROKER_UNAVAILABLE, 5, "backing off")
        assert not service.done(), "run_service must stay up while the broker is away"
        assert await relay.pending() == EVENTS

        await jetstream_server.start()
        await received.wait_for(1 + EVENTS, timeout=60)
        await eventually(lambda: relay.state is RelayState.PUBLISHING, 10, "publishing")
        assert not service.done()
    finally:
        await relay.close()
        stop.set()
        await asyncio.wait_for(service, timeout=30)

    events = received.events()
    assert len(events) == 1 + EVENTS and max(events.values()) == 1
    assert await relay.pending() == 0
    relay_records = [r for r in caplog.records if r.name == "common_events.outbox.relay"]
    down = [r for r in relay_records if "broker unavailable" in r.getMessage()]
    back = [r for r in relay_records if "publishing again" in r.getMessage()]
    assert len(down) == 1, [r.getMessage() for r in relay_records]
    assert down[0].levelno == logging.WARNING
    assert len(back) == 1, [r.getMessage() for r in relay_records]
