"""A tickets service SIGKILLed at random points while it commits 500 events and its
relay publishes them: after its restarts every committed event is on JetStream exactly
once, none of a rolled-back transaction is, and each ticket's events are in order."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from common_events import connect
from common_events.embedded import EmbeddedNatsServer
from common_events.outbox import create_tables
from tests.outbox.processes import ROLLED_BACK_PRICE, TICKETS
from tests.outbox.support import Received, close_all, create_service_tables, record_tickets

REPO = Path(__file__).resolve().parents[2]
TOTAL = 500
KILLS = 20


class Producer:
    """One run of ``tests.outbox.processes producer``; its stdout read line by line."""

    def __init__(self, database: str, broker: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.outbox.processes",
                "producer",
                "--database",
                database,
                "--broker",
                broker,
                "--total",
                str(TOTAL),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.duplicates = 0

    def read_until(self, predicate: object, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            line = line.strip()
            if line.startswith("duplicate"):
                self.duplicates += 1
            if predicate(line):  # type: ignore[operator]
                return line
            if time.monotonic() > deadline:
                break
        self.kill()
        stderr = self.process.stderr.read() if self.process.stderr else ""
        raise AssertionError(f"producer did not get there within {timeout}s:\n{stderr}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def committed(line: str) -> int | None:
    return int(line.split()[1]) if line.startswith("committed") else None


async def run_crashes(database: str, server: EmbeddedNatsServer, seed: int) -> dict[str, int]:
    engine = create_async_engine(database)
    await create_tables(engine)
    await create_service_tables(engine)
    await engine.dispose()

    rng = random.Random(seed)
    kill_points = sorted(rng.sample(range(1, TOTAL), KILLS))
    received = Received()
    repeats_stopped = 0
    async with await connect(server.url) as bus:
        listeners = await record_tickets(bus, received)
        loop = asyncio.get_running_loop()
        for point in kill_points:
            producer = Producer(database, server.url)
            # Reading a pipe blocks: let a thread do it while the listeners run.
            await loop.run_in_executor(
                None,
                producer.read_until,
                lambda line, point=point: (committed(line) or 0) >= point,
                60.0,
            )
            producer.kill()
            repeats_stopped += producer.duplicates
        producer = Producer(database, server.url)
        await loop.run_in_executor(None, producer.read_until, lambda line: line == "done", 120.0)
        producer.process.wait(timeout=30)
        repeats_stopped += producer.duplicates
        await received.wait_for(TOTAL, timeout=30)
        # Anything more (a repeat JetStream did not stop) would arrive by now too: the
        # relay marked every row sent, and the listeners are idle.
        await close_all(listeners)

    events = received.events()
    assert len(events) == TOTAL, f"lost: {TOTAL - len(events)}"
    assert max(events.values()) == 1, f"twice: {[e for e, n in events.items() if n > 1]}"
    assert sorted(events) == sorted(
        (f"t{number % TICKETS}", number // TICKETS) for number in range(TOTAL)
    )
    assert max(received.message_ids().values()) == 1
    rolled_back = [d for d in received.deliveries if d.price >= ROLLED_BACK_PRICE]
    assert not rolled_back, rolled_back
    versions: dict[str, list[int]] = defaultdict(list)
    for delivery in sorted(received.deliveries, key=lambda delivery: delivery.sequence):
        versions[delivery.ticket_id].append(delivery.version)
    assert all(found == sorted(found) for found in versions.values()), versions
    return {"kills": KILLS, "repeats_stopped_by_jetstream": repeats_stopped}


async def test_sigkilled_producer_loses_nothing_on_sqlite(
    tmp_path: Path, jetstream_server: EmbeddedNatsServer
) -> None:
    stats = await run_crashes(f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}", jetstream_server, 1)
    print(stats)


async def test_sigkilled_producer_loses_nothing_on_postgresql(
    postgres_url: str, jetstream_server: EmbeddedNatsServer
) -> None:
    stats = await run_crashes(postgres_url, jetstream_server, 2)
    print(stats)
