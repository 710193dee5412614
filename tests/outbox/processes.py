"""Child processes for the crash tests: ``python -m tests.outbox.processes COMMAND``.

``producer``: a tickets service that commits ticket events through the outbox (and
rolls some transactions back) while its relay publishes them. It resumes where the
database says it stopped, so it can be SIGKILLed and started again at any point. It
prints ``committed N`` after each commit, ``duplicate ID`` when the broker reports a
repeat it stored before, and ``done`` once everything is published.

``listener``: an idempotent listener that applies ``ticket:created`` and, with
``--crash``, SIGKILLs its own process after the commit and before the ack.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from common_events import Bus, Message, TicketCreatedEvent, connect
from common_events.outbox import Backoff, IdempotentListener, Outbox, OutboxRelay
from tests.outbox.support import Ticket, ticket_event

TICKETS = 25
ROLLED_BACK_PRICE = 100_000
"""Events of rolled-back transactions carry this price plus their number."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _DuplicateReporter(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if "was stored before" in record.getMessage():
            say(f"duplicate {record.args[1] if record.args else '?'}")  # type: ignore[index]


class RolledBack(Exception):
    pass


async def committed_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        total = await session.scalar(select(func.coalesce(func.sum(Ticket.version + 1), 0)))
    return int(total or 0)


async def produce(database: str, broker: str, total: int, rollback_every: int) -> None:
    engine = create_async_engine(database)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    relay_logger = logging.getLogger("common_events.outbox.relay")
    relay_logger.setLevel(logging.DEBUG)
    relay_logger.propagate = False
    relay_logger.addHandler(_DuplicateReporter())
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    relay_logger.addHandler(warnings)
    bus: Bus = await connect(broker)
    outbox = Outbox()
    relay = OutboxRelay(
        bus,
        engine,
        outbox=outbox,
        batch_size=20,
        poll_interval=0.05,
        lease_ttl=1.0,
        backoff=Backoff(initial=0.05, maximum=0.5),
    )
    await relay.start()
    number = await committed_count(sessions)
    while number < total:
        ticket_id, version = f"t{number % TICKETS}", number // TICKETS
        if rollback_every and number % rollback_every == 3:
            try:
                async with sessions.begin() as session:
                    event = ticket_event(ticket_id, version, price=ROLLED_BACK_PRICE + number)
                    outbox.add(session, event)
                    await session.flush()
                    raise RolledBack
            except RolledBack:
                pass
        async with sessions.begin() as session:
            if version == 0:
                session.add(Ticket(id=ticket_id, title="show", price=number, version=0))
            else:
                ticket = await session.get(Ticket, ticket_id, with_for_update=True)
                assert ticket is not None and ticket.version == version - 1, (ticket_id, version)
                ticket.version = version
                ticket.price = number
            outbox.add(session, ticket_event(ticket_id, version, price=number))
        say(f"committed {number + 1}")
        number += 1
    async with asyncio.timeout(60):
        while await relay.pending():
            relay.wake()
            await asyncio.sleep(0.05)
    say("done")
    await relay.close()
    await bus.close()
    await engine.dispose()


class CrashingApplier(IdempotentListener[TicketCreatedEvent]):
    queue_group = "orders-service"
    ack_wait = 1.0

    crash = False

    async def handle(self, event: TicketCreatedEvent, session: AsyncSession, msg: Message) -> None:
        session.add(Ticket(id=event.id, title=event.title, price=int(event.price), version=0))

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        applied = await self.apply(event, msg)
        say(f"applied {applied} delivery {msg.delivery_count}")
        if self.crash:
            os.kill(os.getpid(), signal.SIGKILL)  # committed, never acknowledged
        await msg.ack()
        say("acked")
        self.finished.set()

    finished: asyncio.Event


async def listen(database: str, broker: str, crash: bool) -> None:
    engine = create_async_engine(database)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with await connect(broker) as bus:
        listener = CrashingApplier(bus, sessions)
        listener.crash = crash
        listener.finished = asyncio.Event()
        await listener.listen()
        say("listening")
        await asyncio.wait_for(listener.finished.wait(), timeout=60)
        await listener.close()
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["producer", "listener"])
    parser.add_argument("--database", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--total", type=int, default=500)
    parser.add_argument("--rollback-every", type=int, default=7)
    parser.add_argument("--crash", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.command == "producer":
        asyncio.run(produce(args.database, args.broker, args.total, args.rollback_every))
    else:
        asyncio.run(listen(args.database, args.broker, args.crash))


if __name__ == "__main__":
    main()
