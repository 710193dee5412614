"""NATS Streaming throughput: this package against node-nats-streaming, on one server.

    python benchmarks/stan_bench.py [--messages N] [--awaited N] [--window W] [--repeat R]
                                    [--rows awaited,callbacks,...] [--pin]

Starts one nats-streaming-server (memory store, loopback) and measures, for both
clients, doing the same work with the same payload (a ``ticket:created`` event):

- publish, awaited one by one (each publish waits for its PubAck before the next);
- publish, pipelined, callbacks: send without waiting and count the PubAcks in a
  callback, at most ``--window`` unacknowledged (Node: ``stan.publish(subject, data,
  ackHandler)``; ours: ``StanClient.publish_async`` and a done callback);
- publish, pipelined, publish_many: ``Publisher.publish_many``, at most ``--window``
  unacknowledged (Node: its callback style again, as it has no other);
- publish, pipelined, gather: ``asyncio.gather`` over ``Publisher.publish`` (Node: the
  same);
- consume: deliver all available, manual ack, each message parsed and validated as a
  ``TicketCreatedEvent`` (Python: a ``Listener``; Node: JSON.parse and field checks).
  A third column, plain nats-py doing the same work (the NATS Streaming protocol by
  hand: parse each ``MsgProto``, validate, publish its ``Ack``), is what a service
  writing nats-py's subscription and publish calls itself would get.

``--pin`` puts the server on one CPU and both clients on another
(``benchmarks/placement.py``, for comparing builds of one client). Both sides serialise
the event on every publish (``model_dump_json`` / ``JSON.stringify``). Prints messages
per second and the ratio ours / Node's (above 1: we are faster). Runs alternate between
the clients, each round starting with the next one, and each figure is the best of
``--repeat``. ``--rows`` picks rows (without a pipelined row, consume publishes its
messages first).
Needs the server binary (scripts/install-stan-server.sh) and the Node peer
(tests/interop/install.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.placement import Placement  # noqa: E402
from common_events.contracts.samples import sample_events  # noqa: E402
from common_events.core.bus import Bus  # noqa: E402
from common_events.core.listener import Listener  # noqa: E402
from common_events.core.message import Message  # noqa: E402
from common_events.core.publisher import Publisher  # noqa: E402
from common_events.events import Subjects, TicketCreatedEvent  # noqa: E402
from common_events.transports.stan import StanTransport, connect, protocol  # noqa: E402
from common_events.transports.stan import protocol_pb2 as pb  # noqa: E402
from tests.fixtures.stan import StanServer, find_stan_server  # noqa: E402

NODE_SCRIPT = Path(__file__).with_name("stan_bench.js")
SUBJECT = Subjects.TICKET_CREATED.value
EVENT = sample_events()[Subjects.TICKET_CREATED]
assert isinstance(EVENT, TicketCreatedEvent)


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


@dataclass(frozen=True)
class Result:
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


@dataclass(frozen=True)
class HandWrittenSession:
    """The NATS Streaming protocol's requests written out over a plain nats-py
    connection, for the clients measured without this package's transport."""

    nc: Any
    client_id: str
    subjects: protocol.SessionSubjects

    @classmethod
    async def connect(cls, nc: Any, cluster_id: str, client_id: str) -> HandWrittenSession:
        """Answer heartbeats, then ask the server for a session."""
        heartbeat_inbox = nc.new_inbox()

        async def on_heartbeat(msg: Any) -> None:
            await nc.publish(msg.reply, b"")

        await nc.subscribe(heartbeat_inbox, cb=on_heartbeat)
        request = protocol.encode_connect_request(
            client_id=client_id, heartbeat_inbox=heartbeat_inbox,
            conn_id=client_id.encode(), ping_interval=5, ping_max_out=3,
        )  # fmt: skip
        reply = await nc.request(protocol.discover_subject(cluster_id), request)
        return cls(nc, client_id, protocol.decode_connect_response(reply.data).subjects)

    async def subscribe(self, inbox: str, group: str, max_in_flight: int) -> str:
        """A durable queue subscription from the first message, delivered to ``inbox``;
        its ack inbox."""
        request = protocol.encode_subscription_request(
            client_id=self.client_id, subject=SUBJECT, inbox=inbox, queue_group=group,
            durable_name=group, max_in_flight=max_in_flight, ack_wait_seconds=30,
            start_position=protocol.StartPosition.FIRST,
        )  # fmt: skip
        reply = await self.nc.request(self.subjects.sub_requests, request)
        ack_inbox: str = protocol.decode_subscription_response(reply.data).ack_inbox
        return ack_inbox

    async def close(self) -> None:
        """End the session; the measurement is over, so a failure here does not count."""
        with contextlib.suppress(Exception):
            await self.nc.request(
                self.subjects.close_requests, protocol.encode_close_request(self.client_id)
            )


class Bench:
    def __init__(self, server: StanServer, window: int, max_in_flight: int) -> None:
        self.server = server
        self.window = window
        self.max_in_flight = max_in_flight
        self._runs = 0

    def client_id(self, what: str) -> str:
        self._runs += 1
        return f"bench-{what}-{self._runs}"

    async def bus(self, what: str) -> Bus:
        transport = await connect(
            self.server.url,
            cluster_id=self.server.cluster_id,
            client_id=self.client_id(what),
            max_pub_acks_inflight=self.window,
        )
        return Bus(transport)

    # -- ours ---------------------------------------------------------------------------

    async def py_publish_awaited(self, n: int) -> Result:
        bus = await self.bus("py-pub")
        publisher = TicketCreatedPublisher(bus)
        try:
            started = time.perf_counter()
            for _ in range(n):
                await publisher.publish(EVENT)
            return Result(n, time.perf_counter() - started)
        finally:
            await bus.close()

    async def py_publish_pipelined(self, n: int) -> Result:
        bus = await self.bus("py-pipe")
        publisher = TicketCreatedPublisher(bus)
        try:
            started = time.perf_counter()
            # Many publishes in flight, bounded by max_pub_acks_inflight (the window).
            await asyncio.gather(*(publisher.publish(EVENT) for _ in range(n)))
            return Result(n, time.perf_counter() - started)
        finally:
            await bus.close()

    async def py_publish_many(self, n: int) -> Result:
        bus = await self.bus("py-many")
        publisher = TicketCreatedPublisher(bus)
        try:
            started = time.perf_counter()
            # The public bulk API: the transport pipelines within max_pub_acks_inflight.
            await publisher.publish_many([EVENT] * n)
            return Result(n, time.perf_counter() - started)
        finally:
            await bus.close()

    async def py_publish_callbacks(self, n: int) -> Result:
        bus = await self.bus("py-futures")
        transport = bus.transport
        assert isinstance(transport, StanTransport)
        client = transport.client
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        remaining = n

        def on_ack(future: asyncio.Future[str]) -> None:
            nonlocal remaining
            future.result()
            remaining -= 1
            if remaining == 0:
                finished.set_result(None)

        try:
            started = time.perf_counter()
            # Node's style: send, and count the PubAcks in a callback as they come; the
            # client holds back once max_pub_acks_inflight are unacknowledged.
            for _ in range(n):
                future = await client.publish_async(SUBJECT, EVENT.model_dump_json().encode())
                future.add_done_callback(on_ack)
            await finished
            return Result(n, time.perf_counter() - started)
        finally:
            await bus.close()

    async def py_consume(self, n: int) -> Result:
        bus = await self.bus("py-sub")
        handled = 0
        finished = asyncio.Event()

        class Consumer(Listener[TicketCreatedEvent]):
            queue_group = f"py-consumer-{self._runs}"
            max_in_flight = self.max_in_flight
            ack_wait = 30

            async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
                nonlocal handled
                await msg.ack()
                handled += 1
                if handled == n:
                    finished.set()

        try:
            started = time.perf_counter()
            listener = await Consumer(bus).listen()
            await asyncio.wait_for(finished.wait(), 300)
            seconds = time.perf_counter() - started
            await listener.unsubscribe()
            return Result(n, seconds)
        finally:
            await bus.close()

    # -- plain nats-py ------------------------------------------------------------------

    async def nats_py_consume(self, n: int) -> Result:
        """The consume row with nothing between nats-py and the work: the protocol's
        connect and subscription requests by hand, then parse, validate and ack each
        delivery in the subscription's callback."""
        import nats

        client_id = self.client_id("nats-py-sub")
        group = f"nats-py-consumer-{self._runs}"
        nc = await nats.connect(self.server.nats_url)
        try:
            session = await HandWrittenSession.connect(nc, self.server.cluster_id, client_id)
            inbox = nc.new_inbox()
            subscribed = asyncio.Event()
            finished = asyncio.Event()
            ack_inbox = ""
            handled = 0
            validate = TicketCreatedEvent.model_validate_json

            async def on_delivery(msg: Any) -> None:
                nonlocal handled
                if not subscribed.is_set():  # the server delivers before it answers
                    await subscribed.wait()
                delivery = pb.MsgProto.FromString(msg.data)
                validate(delivery.data)
                await nc.publish(ack_inbox, protocol.encode_ack(SUBJECT, delivery.sequence))
                handled += 1
                if handled == n:
                    finished.set()

            started = time.perf_counter()
            await nc.subscribe(
                inbox, cb=on_delivery, pending_msgs_limit=0, pending_bytes_limit=0
            )
            ack_inbox = await session.subscribe(inbox, group, self.max_in_flight)
            subscribed.set()
            await asyncio.wait_for(finished.wait(), 300)
            seconds = time.perf_counter() - started
            await session.close()
            return Result(n, seconds)
        finally:
            await nc.close()

    # -- Node ---------------------------------------------------------------------------

    def node(self, mode: str, what: str, n: int, *args: str) -> Result:
        command = [
            "node", str(NODE_SCRIPT), mode, self.server.nats_url, self.server.cluster_id,
            self.client_id(what), SUBJECT, str(n), *args,
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        return Result(int(figures["messages"]), float(figures["seconds"]))

    async def node_async(self, mode: str, what: str, n: int, *args: str) -> Result:
        return await asyncio.to_thread(self.node, mode, what, n, *args)


Measure = Callable[[], Awaitable[Result]]
ROWS = ("awaited", "callbacks", "publish_many", "gather", "consume")


async def best_of(repeat: int, *clients: Measure) -> list[Result]:
    """Alternate the clients so that all see the same machine weather; each round starts
    with the next client. The best run of each, in the order given."""
    results: list[list[Result]] = [[] for _ in clients]
    for round_ in range(repeat):
        shift = round_ % len(clients)
        for index in [*range(shift, len(clients)), *range(shift)]:
            results[index].append(await clients[index]())
    return [max(runs, key=lambda r: r.rate) for runs in results]


def machine() -> str:
    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in lscpu.splitlines()
             if line.startswith("Model name")),
            "",
        )
    except (OSError, subprocess.SubprocessError):
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({model or platform.processor() or 'unknown CPU'}), "
        f"Python {platform.python_version()}, Node {node}"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="pipelined and consume")
    parser.add_argument("--awaited", type=int, default=2_000, help="awaited one by one")
    parser.add_argument("--window", type=int, default=1024, help="publishes in flight")
    parser.add_argument("--max-in-flight", type=int, default=1024, help="consumer's")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument(
        "--pin", action="store_true", help="broker and clients on separate CPUs (placement.py)"
    )
    parser.add_argument("--rows", default="", help=f"comma-separated, of {', '.join(ROWS)}")
    args = parser.parse_args()
    only = set(args.rows.split(",")) if args.rows else set(ROWS)
    if only - set(ROWS):
        print(f"unknown rows: {', '.join(sorted(only - set(ROWS)))}; known: {', '.join(ROWS)}")
        return 2

    binary = find_stan_server()
    if binary is None:
        print("nats-streaming-server not found: run scripts/install-stan-server.sh")
        return 2
    if not (ROOT / "tests" / "interop" / "node_modules" / "node-nats-streaming").is_dir():
        print("node-nats-streaming not installed: run tests/interop/install.sh")
        return 2

    payload = EVENT.model_dump_json()
    placement = Placement(enabled=args.pin)
    placement.clients()  # ours runs in this process; Node's inherits the same CPU
    print(f"machine: {machine()}; {placement.describe()}")
    print(f"payload: {len(payload)} bytes ({SUBJECT}), window {args.window}, "
          f"consumer max in flight {args.max_in_flight}, best of {args.repeat}")

    with tempfile.TemporaryDirectory() as workdir:
        server = StanServer(binary, Path(workdir), cluster_id="bench")
        with placement.on_server_cpu():
            server.start()
        try:
            bench = Bench(server, args.window, args.max_in_flight)
            node_pipelined = lambda: bench.node_async(  # noqa: E731
                "publish-pipelined", "node-pipe", args.messages, payload, str(args.window)
            )
            # Ours, Node's, and (consume) plain nats-py's.
            measurements: dict[str, tuple[str, list[Measure]]] = {
                "awaited": ("publish, awaited one by one", [
                    lambda: bench.py_publish_awaited(args.awaited),
                    lambda: bench.node_async("publish-awaited", "node-pub", args.awaited, payload),
                ]),
                "callbacks": ("publish, pipelined (callbacks)", [
                    lambda: bench.py_publish_callbacks(args.messages), node_pipelined,
                ]),
                "publish_many": ("publish, pipelined (publish_many)", [
                    lambda: bench.py_publish_many(args.messages), node_pipelined,
                ]),
                "gather": ("publish, pipelined (gather)", [
                    lambda: bench.py_publish_pipelined(args.messages), node_pipelined,
                ]),
                "consume": ("consume, manual ack, validated", [
                    lambda: bench.py_consume(args.messages),
                    lambda: bench.node_async(
                        "consume", "node-sub", args.messages,
                        f"node-consumer-{time.time_ns()}", str(args.max_in_flight),
                    ),
                    lambda: bench.nats_py_consume(args.messages),
                ]),
            }  # fmt: skip
            if "consume" in only and not only & {"callbacks", "publish_many", "gather"}:
                await bench.py_publish_many(args.messages)  # something to consume
            rows = [
                (label, await best_of(args.repeat, *clients))
                for key, (label, clients) in measurements.items()
                if key in only
            ]
        finally:
            server.stop()

    print()
    print(
        f"{'':34} {'common-events':>14} {'node-nats-streaming':>20} {'ratio':>7}"
        f" {'plain nats-py':>14} {'ours/nats-py':>13}"
    )
    for name, (ours, node, *plain) in rows:
        line = f"{name:34} {ours.rate:>12,.0f}/s {node.rate:>18,.0f}/s"
        line += f" {ours.rate / node.rate:>7.2f}"
        if plain:
            line += f" {plain[0].rate:>12,.0f}/s {ours.rate / plain[0].rate:>13.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
