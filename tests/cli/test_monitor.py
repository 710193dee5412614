"""``common-events monitor`` against a real nats-server with JetStream and a real
nats-streaming-server: which server answers, what it holds, ``--watch``, ``--json``."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from common_events import (
    Bus,
    Listener,
    Message,
    OrderCreatedEvent,
    OrderStatus,
    OrderTicket,
    Publisher,
    TicketCreatedEvent,
    connect,
)
from common_events.cli.main import main
from common_events.cli.monitor import monitoring_url
from common_events.errors import ConfigurationError
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.jetstream.monitor import MonitorSnapshot, read_monitor, render
from tests.fixtures.stan import StanServer

WITHIN = 15.0


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


class HoldingListener(Listener[TicketCreatedEvent]):
    """Takes every message and acknowledges none until released: ack pending."""

    queue_group = "orders-service"
    ack_wait = 60.0  # no redelivery while a test reads the figures
    release: asyncio.Event

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        await self.release.wait()
        await msg.ack()


class PaymentsListener(Listener[OrderCreatedEvent]):
    queue_group = "payments-service"

    async def on_message(self, event: OrderCreatedEvent, msg: Message) -> None:
        await msg.ack()


def order(number: int) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        id=f"o{number}",
        version=0,
        status=OrderStatus.CREATED,
        user_id="u1",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        ticket=OrderTicket(id="t1", price=20),
    )


@dataclass
class Busy:
    server: EmbeddedNatsServer
    address: str
    """``host:port`` of the monitoring port, as a person types it."""


async def wait_for_snapshot(
    url: str, check: str, figures: dict[str, tuple[int, int, bool]]
) -> MonitorSnapshot:
    """Read until the server shows, for each queue group, (pending, ack pending,
    bound) as the test set them up: its figures lag a little behind."""
    deadline = time.monotonic() + WITHIN
    while True:
        snapshot = await read_monitor(url)
        seen = {
            c.deliver_group: (c.pending, c.ack_pending, c.bound)
            for s in snapshot.streams
            for c in s.consumers
        }
        if all(seen.get(group) == expected for group, expected in figures.items()):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"{check}: the server never showed it:\n{render(snapshot)}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def busy(nats_server: EmbeddedNatsServer) -> AsyncIterator[Busy]:
    """Three tickets held unacknowledged by a bound queue group, and two orders waiting
    for a durable queue group whose listener has gone."""
    bus: Bus = await connect(nats_server.url, name="tickets-service")
    holding = HoldingListener(bus)
    holding.release = asyncio.Event()
    base = f"http://127.0.0.1:{nats_server.monitor_port}"
    try:
        payments = await PaymentsListener(bus).listen()
        await payments.close()
        # Published once the server knows nobody listens, or it would deliver them.
        await wait_for_snapshot(base, "payments unbound", {"payments-service": (0, 0, False)})
        for number in range(2):
            await OrderCreatedPublisher(bus).publish(order(number))
        await holding.listen()
        for number in range(3):
            await TicketCreatedPublisher(bus).publish(
                TicketCreatedEvent(
                    id=f"t{number}", version=0, title="Concert", price=20, user_id="u1"
                )
            )
        await wait_for_snapshot(
            base,
            "3 ack pending, 2 pending",
            {"orders-service": (0, 3, True), "payments-service": (2, 0, False)},
        )
        yield Busy(nats_server, f"127.0.0.1:{nats_server.monitor_port}")
    finally:
        holding.release.set()
        await holding.close(drain_timeout=5)
        await bus.close()


async def test_snapshot_reads_streams_consumers_and_connections(busy: Busy) -> None:
    snapshot = await read_monitor(f"http://{busy.address}")
    assert snapshot.server.jetstream
    (stream,) = snapshot.streams
    assert (stream.name, stream.messages, stream.last_seq) == ("EVENTS", 5, 5)
    assert "ticket:created" in stream.subjects and stream.storage == "file"
    consumers = {c.deliver_group: c for c in stream.consumers}
    orders, payments = consumers["orders-service"], consumers["payments-service"]
    assert (orders.filter_subject, orders.bound, orders.durable) == ("ticket:created", True, True)
    assert (orders.pending, orders.ack_pending, orders.delivered_stream_seq) == (0, 3, 5)
    assert (payments.filter_subject, payments.bound) == ("order:created", False)
    assert (payments.pending, payments.ack_pending) == (2, 0)
    names = [connection.name for connection in snapshot.connections]
    assert names == ["tickets-service"]
    assert snapshot.connections[0].client.startswith("python")


async def test_monitor_command_takes_host_and_port_and_prints_tables(
    busy: Busy, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await asyncio.to_thread(main, ["monitor", busy.address])
    out = capsys.readouterr().out
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"nats-server '{busy.server.server_name}' at http://{busy.address}")
    assert "JetStream on" in lines[0]
    assert lines[1] == "1 connection(s), 1 stream(s), 2 consumer(s), 5 message(s)"

    def row(header: str, first_cell: str, contains: str) -> dict[str, str]:
        heading = next(line for line in lines if line.startswith(header))
        columns = [part for part in heading.split("  ") if part.strip()]
        found = next(
            line for line in lines if line.startswith(first_cell) and contains in line
        )
        return dict(zip([c.strip() for c in columns], found.split(), strict=True))

    assert row("STREAM  MESSAGES", "EVENTS ", " file ") == {
        "STREAM": "EVENTS", "MESSAGES": "5", "FIRST SEQ": "1", "LAST SEQ": "5",
        "CONSUMERS": "2", "STORAGE": "file", "REPLICAS": "1",
    }  # fmt: skip
    orders = row("STREAM  CONSUMER", "EVENTS ", "orders-service")
    assert (orders["SUBJECT"], orders["LISTENING"]) == ("ticket:created", "yes")
    assert (orders["PENDING"], orders["ACK PENDING"]) == ("0", "3")
    payments = row("STREAM  CONSUMER", "EVENTS ", "payments-service")
    assert (payments["LISTENING"], payments["PENDING"], payments["ACK PENDING"]) == (
        "no",
        "2",
        "0",
    )
    connection = next(line for line in lines if line.startswith("tickets-service "))
    assert "python" in connection


async def test_monitor_json_says_which_server_it_read(
    busy: Busy, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await asyncio.to_thread(main, ["monitor", f"http://{busy.address}/", "--json"])
    assert status == 0
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "jetstream"
    assert "raw" not in document
    (stream,) = document["streams"]
    pending = {c["deliver_group"]: (c["pending"], c["ack_pending"]) for c in stream["consumers"]}
    assert pending == {"orders-service": (0, 3), "payments-service": (2, 0)}
    assert [c["name"] for c in document["connections"]] == ["tickets-service"]


async def test_a_nats_server_without_jetstream_shows_its_connections(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.fixtures.jetstream import nats_server_binary

    async with EmbeddedNatsServer(jetstream=False, binary=nats_server_binary()) as server:
        status = await asyncio.to_thread(main, ["monitor", f"127.0.0.1:{server.monitor_port}"])
    out = capsys.readouterr().out
    assert status == 0
    assert "JetStream off" in out.splitlines()[0]
    assert "JetStream is not enabled" in out


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common_events.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def watch(address: str, *options: str, refreshes: int = 2) -> tuple[list[str], str, int]:
    """Run ``monitor --watch`` until it printed ``refreshes`` times, then Ctrl-C it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "common_events.cli.main", "monitor", address, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + WITHIN
        seen = 0
        while seen < refreshes:
            assert time.monotonic() < deadline, lines
            line = process.stdout.readline()
            assert line, f"monitor stopped early: {process.stderr.read() if process.stderr else ''}"
            lines.append(line)
            seen += "Ctrl-C stops" in line or line.startswith("{")
        process.send_signal(signal.SIGINT)
        # Not communicate(): it reads the pipe's descriptor and would miss what
        # readline() has already buffered.
        lines.extend(process.stdout.readlines())
        assert process.stderr is not None
        err = process.stderr.read()
        process.wait(timeout=WITHIN)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return lines, err, process.returncode


async def test_watch_prints_again_until_ctrl_c(busy: Busy) -> None:
    started = time.monotonic()
    lines, err, status = await asyncio.to_thread(watch, busy.address, "--watch", "0.3")
    assert status == 0, err
    assert "Traceback" not in err
    headings = [line for line in lines if "every 0.3s (Ctrl-C stops)" in line]
    assert len(headings) >= 2
    assert sum(line.startswith("EVENTS ") and "orders-service" in line for line in lines) >= 2, (
        "".join(lines)
    )
    assert time.monotonic() - started >= 0.3


async def test_watch_with_json_prints_one_document_per_line(busy: Busy) -> None:
    lines, err, status = await asyncio.to_thread(
        watch, busy.address, "--json", "--watch", "0.2", refreshes=3
    )
    assert status == 0, err
    documents = [json.loads(line) for line in lines if line.strip()]
    assert len(documents) >= 3
    assert {document["kind"] for document in documents} == {"jetstream"}


def test_watch_reports_a_server_that_does_not_answer_and_goes_on(free_port: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "common_events.cli.main", "monitor",
         f"127.0.0.1:{free_port}", "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        second = process.stderr.readline()
        assert process.poll() is None, "it should keep watching"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=WITHIN)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for line in (first, second):
        assert line.startswith("common-events monitor: cannot read"), line
        assert "Connection refused" in line
    assert "Traceback" not in err
    assert process.returncode == 0


def test_monitor_finds_a_nats_streaming_server_by_itself(stan_server: StanServer) -> None:
    address = stan_server.monitor_url.removeprefix("http://")
    result = run_cli("monitor", address)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"NATS Streaming cluster '{stan_server.cluster_id}'")
    result = run_cli("monitor", address, "--json")
    assert json.loads(result.stdout)["kind"] == "nats-streaming"
    lines, err, status = watch(address, "--watch", "0.2")
    assert status == 0, err
    assert sum(line.startswith("NATS Streaming cluster") for line in lines) >= 2


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("127.0.0.1:8222", "http://127.0.0.1:8222"),
        ("nats-srv", "http://nats-srv:8222"),
        ("http://nats-srv:8222/", "http://nats-srv:8222"),
        ("https://nats.example.com/monitor/", "https://nats.example.com/monitor"),
        ("[::1]:8222", "http://[::1]:8222"),
    ],
)
def test_monitoring_addresses(address: str, url: str) -> None:
    assert monitoring_url(address) == url


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("nats://127.0.0.1:4222", "not a monitoring address"),
        ("stan://nats-srv:4222", "not a monitoring address"),
        ("127.0.0.1:http", "the port is not a number"),
        ("127.0.0.1:99999", "the port is not a number"),
        ("http://", "names no host"),
        ("", "no monitoring address"),
    ],
)
def test_addresses_that_are_not_a_monitoring_port(address: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        monitoring_url(address)


@pytest.fixture
def free_port() -> int:
    from common_events.testing.servers.ports import free_loopback_port

    return free_loopback_port()
