"""How fast can Python consume NATS Streaming deliveries at all? An experiment, not a client.

    python benchmarks/stan_reader_ceiling.py [--messages N] [--repeat R]

The consume row of ``stan_bench.py`` is bounded by nats-py: with nothing of this package
in the way, nats-py reaches about three quarters of node-nats-streaming once Node's JIT
is warm. This measures what is left when nats-py's per-message machinery (its parser's
coroutine per message, the ``Msg`` it builds, the subscription's queue and task) is not
in the way: a minimal reader of the NATS protocol (``asyncio.Protocol``, ``MSG`` lines
split by hand) on a connection of its own, doing the same work per delivery as the
other clients (parse the ``MsgProto``, validate a ``TicketCreatedEvent`` with pydantic in
an ``async`` handler, publish the ``Ack``), with the acks of one read written at once.
The NATS Streaming connect and subscription requests go through nats-py.

It has none of what a client needs besides (authentication, TLS, reconnecting, flow
control when a handler waits), so it says how much a delivery path of the package's own
could gain, not what one would reach. Prints messages per second for it, plain nats-py
(``stan_bench.py``'s) and node-nats-streaming, alternating, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

from benchmarks.stan_bench import (  # noqa: E402
    SUBJECT,
    Bench,
    HandWrittenSession,
    Result,
    best_of,
)
from common_events.events import TicketCreatedEvent  # noqa: E402
from common_events.transports.stan import protocol  # noqa: E402
from common_events.transports.stan import protocol_pb2 as pb  # noqa: E402
from tests.fixtures.stan import StanServer, find_stan_server  # noqa: E402

CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"lang":"python","protocol":1}\r\n'


class DeliveryReader(asyncio.Protocol):
    """Reads ``MSG`` frames of one subscription, handles each in line, acks in batches."""

    def __init__(self, inbox: str, expected: int) -> None:
        self.inbox = inbox
        self.expected = expected
        self.handled = 0
        self.finished = asyncio.get_running_loop().create_future()
        self.subscribed = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.ack_head: bytes | None = None  # "PUB <ack inbox> ", once the server said it
        self.unsent: list[bytes] = []  # acks of deliveries that came before that
        self.encoder = protocol.AckEncoder(SUBJECT)
        self.transport: Any = None

    async def on_message(self, event: TicketCreatedEvent) -> None:
        """The service's handler: nothing to do but return."""

    async def handle(self, proto: pb.MsgProto) -> None:
        await self.on_message(TicketCreatedEvent.model_validate_json(proto.data))

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def acks_to(self, ack_inbox: str) -> None:
        self.ack_head = f"PUB {ack_inbox} ".encode()
        self.transport.write(b"".join(self.frame(ack) for ack in self.unsent))
        self.unsent.clear()

    def frame(self, ack: bytes) -> bytes:
        assert self.ack_head is not None
        return b"%s%d\r\n%s\r\n" % (self.ack_head, len(ack), ack)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        out: list[bytes] = []
        position = 0
        while (end := buffer.find(b"\r\n", position)) >= 0:
            line = bytes(buffer[position:end])
            if line.startswith(b"MSG "):
                start = end + 2
                size = int(line.rsplit(b" ", 1)[1])
                if len(buffer) < start + size + 2:
                    break  # the rest of the payload is in the next read
                position = start + size + 2
                proto = pb.MsgProto.FromString(bytes(buffer[start : start + size]))
                step = self.handle(proto)
                try:
                    step.send(None)
                except StopIteration:
                    pass
                else:  # a handler that waits would need a task; this one never does
                    step.close()
                    raise RuntimeError("the handler waited")
                ack = self.encoder.encode(proto.sequence)
                if self.ack_head is None:
                    self.unsent.append(ack)
                else:
                    out.append(self.frame(ack))
                self.handled += 1
                if self.handled == self.expected:
                    self.finished.set_result(None)
                continue
            position = end + 2
            if line.startswith(b"INFO "):
                self.transport.write(CONNECT + b"SUB %s 1\r\nPING\r\n" % self.inbox.encode())
            elif line == b"PING":
                out.append(b"PONG\r\n")
            elif line == b"PONG" and not self.subscribed.done():
                self.subscribed.set_result(None)
        del buffer[:position]
        if out:
            self.transport.write(b"".join(out))


async def reader_consume(server: StanServer, client_id: str, n: int) -> Result:
    nc = await nats.connect(server.nats_url)
    try:
        session = await HandWrittenSession.connect(nc, server.cluster_id, client_id)
        inbox = nc.new_inbox()
        host, port = server.nats_url.removeprefix("nats://").rsplit(":", 1)
        started = time.perf_counter()
        transport, reader = await asyncio.get_running_loop().create_connection(
            lambda: DeliveryReader(inbox, n), host, int(port)
        )
        try:
            await reader.subscribed
            reader.acks_to(await session.subscribe(inbox, client_id, 1024))
            await asyncio.wait_for(reader.finished, 300)
            return Result(n, time.perf_counter() - started)
        finally:
            transport.close()
            await session.close()
    finally:
        await nc.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    binary = find_stan_server()
    if binary is None:
        print("nats-streaming-server not found: run scripts/install-stan-server.sh")
        return 2
    n = args.messages
    with tempfile.TemporaryDirectory() as workdir:
        server = StanServer(binary, Path(workdir), cluster_id="bench")
        server.start()
        try:
            bench = Bench(server, window=1024, max_in_flight=1024)
            await bench.py_publish_many(n)
            reader, plain, node = await best_of(
                args.repeat,
                lambda: reader_consume(server, bench.client_id("reader"), n),
                lambda: bench.nats_py_consume(n),
                lambda: bench.node_async(
                    "consume", "node-sub", n, f"node-consumer-{time.time_ns()}", "1024"
                ),
            )
        finally:
            server.stop()
    print(f"consume {n:,}, validated, acked; best of {args.repeat}")
    print(f"  minimal reader    {reader.rate:>10,.0f}/s  {reader.rate / node.rate:.2f} of Node")
    print(f"  plain nats-py     {plain.rate:>10,.0f}/s  {plain.rate / node.rate:.2f} of Node")
    print(f"  node-nats-streaming {node.rate:>8,.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
