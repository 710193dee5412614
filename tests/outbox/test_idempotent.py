"""Idempotent listeners: a redelivered message changes the database once.

The redeliveries are real: the handler's transaction commits, then the ack never
happens (the handler raises, or its process is SIGKILLed), and the broker delivers the
message again.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from common_events import Bus, Message, TicketCreatedEvent, connect
from common_events.embedded import EmbeddedNatsServer
from common_events.outbox import (
    IdempotentListener,
    Outbox,
    OutboxRelay,
    ProcessedDelivery,
    create_tables,
    delivery_key,
    purge_processed,
)
from common_events.testing.servers import StanServer
from tests.outbox.support import Ticket, create_service_tables, ticket_event

REPO = Path(__file__).resolve().parents[2]


class CrashBeforeAck(Exception):
    """Stands for the process dying after the commit, before the ack."""


class TicketApplier(IdempotentListener[TicketCreatedEvent]):
    queue_group = "orders-service"
    retry_delay = 0.05
    max_deliveries = 10

    def __init__(
        self,
        bus: Bus,
        sessions: async_sessionmaker[AsyncSession],
        *,
        crash_times: int = 0,
        fail_handler_times: int = 0,
    ) -> None:
        super().__init__(bus, sessions)
        self.crash_times = crash_times
        self.fail_handler_times = fail_handler_times
        self.handled = 0
        self.applied: list[bool] = []
        self.done = asyncio.Event()

    async def handle(self, event: TicketCreatedEvent, session: AsyncSession, msg: Message) -> None:
        session.add(Ticket(id=event.id, title=event.title, price=int(event.price)))
        self.handled += 1
        if self.fail_handler_times > 0:
            self.fail_handler_times -= 1
            await session.flush()  # the row reaches the database, then is rolled back
            raise RuntimeError("handler failed half-way")

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.applied.append(await self.apply(event, msg))
        if len(self.applied) <= self.crash_times:
            raise CrashBeforeAck(f"delivery {msg.delivery_count}: committed, not acked")
        await msg.ack()
        self.done.set()


@pytest.fixture
async def bus(broker_url: str) -> AsyncIterator[Bus]:
    made = await connect(broker_url)
    yield made
    await made.close()


async def count(engine: AsyncEngine, model: type) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(model)) or 0)


async def publish_one(
    bus: Bus, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> str:
    """``ticket:created`` for t1, through the outbox; returns its message id."""
    outbox = Outbox()
    async with sessions.begin() as session:
        message_id = outbox.add(session, ticket_event("t1")).message_id
    assert await OutboxRelay(bus, engine).publish_pending() == 1
    return message_id


async def test_a_message_delivered_five_times_changes_the_database_once(
    bus: Bus, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create_service_tables(engine)
    listener = TicketApplier(bus, sessions, crash_times=4)
    await listener.listen()
    await publish_one(bus, engine, sessions)
    await asyncio.wait_for(listener.done.wait(), timeout=20)
    await listener.close()

    assert listener.applied == [True, False, False, False, False]
    assert listener.handled == 1
    assert await count(engine, Ticket) == 1
    assert await count(engine, ProcessedDelivery) == 1


async def test_a_failed_handler_rolls_back_its_work_and_the_key(
    bus: Bus, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await create_service_tables(engine)
    listener = TicketApplier(bus, sessions, fail_handler_times=2)
    await listener.listen()
    await publish_one(bus, engine, sessions)
    await asyncio.wait_for(listener.done.wait(), timeout=20)
    await listener.close()

    assert listener.applied == [True]  # the third delivery; the first two raised
    assert listener.handled == 3
    assert await count(engine, Ticket) == 1
    assert await count(engine, ProcessedDelivery) == 1


async def test_a_repeat_stored_twice_by_the_broker_is_applied_once(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A relay killed between publish and mark publishes the row again. Where the
    broker does not drop the repeat (the in-memory bus; JetStream past its duplicate
    window) it arrives as a second message with the same ``Nats-Msg-Id``: skipped."""
    await create_service_tables(engine)
    async with await connect("memory://") as bus:
        listener = TicketApplier(bus, sessions)
        await listener.listen()
        message_id = await publish_one(bus, engine, sessions)
        await asyncio.wait_for(listener.done.wait(), timeout=10)
        listener.done.clear()
        repeat = ticket_event("t1").model_dump_json().encode()
        ack = await bus.publish("ticket:created", repeat, {"Nats-Msg-Id": message_id})
        assert ack.sequence == 2  # stored again
        await asyncio.wait_for(listener.done.wait(), timeout=10)
        await listener.close()
    assert listener.applied == [True, False]
    assert await count(engine, Ticket) == 1
    assert await count(engine, ProcessedDelivery) == 1


def test_the_delivery_key_prefers_the_message_id() -> None:
    class Raw:
        subject = "ticket:created"
        data = b"{}"
        sequence = 7
        redelivered = False
        delivery_count = 1
        timestamp = None
        headers: dict[str, str] = {}

        async def ack(self) -> None: ...

        async def nak(self, delay: float | None = None) -> None: ...

    raw = Raw()
    assert delivery_key(Message(raw)) == "seq:7"  # type: ignore[arg-type]
    raw.headers = {"Nats-Msg-Id": "abc"}
    assert delivery_key(Message(raw)) == "id:abc"  # type: ignore[arg-type]


async def test_processed_keys_are_purged_after_their_retention(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from datetime import UTC, datetime, timedelta

    async with sessions.begin() as session:
        for number, age in enumerate((timedelta(days=10), timedelta(minutes=1))):
            session.add(
                ProcessedDelivery(
                    subject="ticket:created",
                    queue_group="orders-service",
                    message_key=f"seq:{number}",
                    processed_at=datetime.now(UTC) - age,
                )
            )
    assert await purge_processed(engine, timedelta(days=7)) == 1
    assert await count(engine, ProcessedDelivery) == 1


class ChildListener:
    """One run of ``tests.outbox.processes listener``."""

    def __init__(self, database: str, broker: str, *, crash: bool) -> None:
        command = [sys.executable, "-m", "tests.outbox.processes", "listener"]
        command += ["--database", database, "--broker", broker]
        if crash:
            command.append("--crash")
        self.process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def finish(self, timeout: float = 60) -> tuple[int, list[str]]:
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(f"listener process hung:\n{out}\n{err}") from None
        return self.process.returncode, out.splitlines()


async def test_a_process_killed_between_commit_and_ack_applies_the_message_once(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
    jetstream_server: EmbeddedNatsServer,
) -> None:
    await create_service_tables(engine)
    async with await connect(jetstream_server.url) as bus:
        await publish_one(bus, engine, sessions)
    loop = asyncio.get_running_loop()
    outputs = []
    for crash in (True, True, False):
        child = ChildListener(database_url, jetstream_server.url, crash=crash)
        code, lines = await loop.run_in_executor(None, child.finish)
        assert code == (-signal.SIGKILL if crash else 0), lines
        outputs.append([line for line in lines if line != "listening"])
    # The broker delivered it again after each crash (ack_wait is 1 s), and only the
    # first delivery did the work.
    assert outputs == [
        ["applied True delivery 1"],
        ["applied False delivery 2"],
        ["applied False delivery 3", "acked"],
    ]
    assert await count(engine, Ticket) == 1
    assert await count(engine, ProcessedDelivery) == 1


class SlowApplier(IdempotentListener[TicketCreatedEvent]):
    """Its first delivery holds the transaction open until the test has seen the
    redelivery wait for it in PostgreSQL."""

    queue_group = "orders-service"
    ack_wait = 1.0  # NATS Streaming counts whole seconds
    max_in_flight = 1

    def __init__(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession], shared: dict[str, Any]
    ) -> None:
        super().__init__(bus, sessions)
        self.shared = shared

    async def handle(self, event: TicketCreatedEvent, session: AsyncSession, msg: Message) -> None:
        self.shared["handled"] += 1
        session.add(Ticket(id=event.id, title=event.title, price=int(event.price)))
        await asyncio.wait_for(self.shared["second_waits"].wait(), timeout=20)

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.shared["applied"].append(await self.apply(event, msg))
        await msg.ack()
        if len(self.shared["applied"]) == 2:
            self.shared["done"].set()


async def test_a_redelivery_while_the_first_still_runs_waits_and_skips(
    postgres_url: str, stan_server: StanServer
) -> None:
    """ack_wait passes while the first delivery's transaction is open; the broker hands
    the message to the other member, whose key insert waits on the first's, then finds
    the key once it committed. NATS Streaming is the broker that does this (it cannot be
    told a handler is still working; memory and JetStream can, so they do not)."""
    engine = create_async_engine(postgres_url)
    await create_tables(engine)
    await create_service_tables(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    shared: dict[str, Any] = {
        "handled": 0,
        "applied": [],
        "second_waits": asyncio.Event(),
        "done": asyncio.Event(),
    }
    async with await connect(stan_server.url, cluster_id=stan_server.cluster_id) as bus:
        members = [SlowApplier(bus, sessions, shared), SlowApplier(bus, sessions, shared)]
        for member in members:
            await member.listen()
        await bus.publish("ticket:created", ticket_event("t1").model_dump_json().encode())
        async with engine.connect() as monitor:
            await eventually_async(
                lambda: waiting_on_a_lock(monitor), timeout=20, what="second insert waits"
            )
        shared["second_waits"].set()
        await asyncio.wait_for(shared["done"].wait(), timeout=20)
        for member in members:
            await member.close()
    # The first commits, then the waiting insert fails on its key: skipped.
    assert shared["applied"] == [True, False]
    assert shared["handled"] == 1
    assert await count(engine, Ticket) == 1
    await engine.dispose()


async def waiting_on_a_lock(connection: AsyncConnection) -> bool:
    waiting = await connection.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )
    await connection.rollback()
    return bool(waiting)


async def eventually_async(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str
) -> None:
    # What PostgreSQL's sessions wait on is only seen by asking it: poll.
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    del what
