"""``common-events bridge --health-port``'s ``/metrics`` against real servers: scraped
after bridging known numbers of messages each way, and while JetStream is down; and
what ``--metrics`` says where prometheus-client is missing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common_events.migration.jetstream_stream import EventStream
from common_events.migration.origin import Origin
from common_events.testing.servers import EmbeddedNatsServer, StanServer, free_loopback_port
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.stan import StanTransport
from tests.migration.conftest import ROOT, CliProcess, until
from tests.migration.events import payload

pytestmark = pytest.mark.timeout(120)

TICKETS = 40
ORDERS = 15
COPIED_ORDERS = 3


def bridge_args(stan: StanServer, nats_server: EmbeddedNatsServer, *more: str) -> list[str]:
    return [
        "bridge",
        "--from", stan.url,
        "--cluster-id", stan.cluster_id,
        "--to", nats_server.url,
        "--stan-monitor", stan.monitor_url,
        *more,
    ]  # fmt: skip


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


async def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``: (name, labels) -> value."""
    status, text = await asyncio.to_thread(get, port, "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


def bridged(direction: str, subject: str, outcome: str) -> dict[str, str]:
    return {"direction": direction, "subject": subject, "outcome": outcome}


async def test_metrics_count_what_the_bridge_forwards_each_way(
    stan: StanServer,
    stan_client: StanTransport,
    nats_server: EmbeddedNatsServer,
    js: JetStreamTransport,
    stream: EventStream,
    cli_processes: Any,
) -> None:
    port = free_loopback_port()
    bridge: CliProcess = await cli_processes(
        *bridge_args(
            stan, nats_server,
            "--to-jetstream", "ticket:created", "--to-stan", "order:created",
            "--health-port", str(port), "--metrics",
        )
    )  # fmt: skip
    await bridge.wait_for_line("bridge running")
    before = await scrape(port)
    for direction, subject in (("to_jetstream", "ticket:created"), ("to_stan", "order:created")):
        for outcome in ("forwarded", "already_there"):
            labels = bridged(direction, subject, outcome)
            assert sample(before, "common_events_bridged_messages_total", **labels) == 0

    for n in range(TICKETS):
        await stan_client.publish("ticket:created", payload("ticket:created", f"t{n}"))
    last_order = 0
    for n in range(ORDERS):
        ack = await js.publish("order:created", payload("order:created", f"o{n}"))
        assert ack.sequence is not None
        last_order = ack.sequence
    # Copies of STAN messages (as migrate writes them) are there already: not sent back.
    for n in range(COPIED_ORDERS):
        origin = Origin(stan.cluster_id, "order:created", 1000 + n, 0)
        ack = await js.publish("order:created", payload("order:created", f"c{n}"), origin.headers())
        assert ack.sequence is not None
        last_order = ack.sequence

    async def done() -> bool:
        samples = await scrape(port)
        name = "common_events_bridged_messages_total"
        return (
            sample(samples, name, **bridged("to_jetstream", "ticket:created", "forwarded"))
            == TICKETS
            and sample(samples, name, **bridged("to_stan", "order:created", "forwarded"))
            + sample(samples, name, **bridged("to_stan", "order:created", "already_there"))
            == ORDERS + COPIED_ORDERS
        )

    await until(done, 30)
    samples = await scrape(port)
    bridge.terminate()
    assert await bridge.wait() == 0, bridge.output

    def value(name: str, direction: str, subject: str, **more: str) -> float:
        return sample(samples, name, direction=direction, subject=subject, **more)

    forward, reverse = ("to_jetstream", "ticket:created"), ("to_stan", "order:created")
    name = "common_events_bridged_messages_total"
    assert value(name, *forward, outcome="forwarded") == TICKETS
    assert value(name, *forward, outcome="already_there") == 0
    assert value(name, *reverse, outcome="forwarded") == ORDERS
    assert value(name, *reverse, outcome="already_there") == COPIED_ORDERS
    for direction, subject, steps in (
        (*forward, ("publish", "ack")),
        (*reverse, ("ledger", "publish", "ack")),
    ):
        for step in steps:
            assert value("common_events_bridge_failures_total", direction, subject, step=step) == 0
    assert value("common_events_bridge_lag_seconds_count", *forward) == TICKETS
    assert value("common_events_bridge_lag_seconds_count", *reverse) == ORDERS
    assert 0 <= value("common_events_bridge_lag_seconds_sum", *forward) < 30 * TICKETS
    assert value("common_events_bridge_last_source_sequence", *forward) == TICKETS
    assert value("common_events_bridge_last_source_sequence", *reverse) == last_order
    # The default registry: the process's own metrics come along.
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)

    # What the counts say is what the servers hold.
    assert await stream.subject_count("ticket:created") == TICKETS
    channel = stan.monitor("/streaming/channelsz?channel=order:created")
    assert int(channel["msgs"]) == ORDERS


async def test_metrics_count_the_failed_publishes_while_jetstream_is_down(
    stan: StanServer,
    stan_client: StanTransport,
    nats_server: EmbeddedNatsServer,
    cli_processes: Any,
) -> None:
    port = free_loopback_port()
    bridge: CliProcess = await cli_processes(
        *bridge_args(
            stan, nats_server, "--to-jetstream", "ticket:created", "--health-port", str(port)
        )
    )
    await bridge.wait_for_line("bridge running")
    await nats_server.stop()
    count = 10
    for n in range(count):
        await stan_client.publish("ticket:created", payload("ticket:created", f"t{n}"))
    labels = {"direction": "to_jetstream", "subject": "ticket:created"}

    async def failed() -> bool:
        samples = await scrape(port)
        return sample(samples, "common_events_bridge_failures_total", **labels, step="publish") > 0

    await until(failed, 30)
    await nats_server.start()

    async def forwarded() -> bool:
        samples = await scrape(port)
        name = "common_events_bridged_messages_total"
        return sample(samples, name, **labels, outcome="forwarded") == count

    await until(forwarded, 60)
    bridge.terminate()
    assert await bridge.wait() == 0, bridge.output


def run_without_prometheus_client(*args: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["prometheus_client"] = None  # as if not installed
        from common_events.cli.main import main
        sys.exit(main({list(args)!r}))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_metrics_asked_for_without_prometheus_client_say_what_to_install() -> None:
    servers = ("--from", "stan://127.0.0.1:1", "--cluster-id", "c", "--to", "nats://127.0.0.1:1")
    result = run_without_prometheus_client("bridge", *servers, "--health-port", "0", "--metrics")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "common-events bridge: the bridge's metrics need prometheus-client: "
        "pip install 'common-events[prometheus]'"
    ]
    result = run_without_prometheus_client("bridge", *servers, "--metrics")
    assert result.returncode == 2
    assert "--health-port" in result.stderr


async def test_without_prometheus_client_the_health_port_serves_the_probes_alone(
    stan: StanServer, nats_server: EmbeddedNatsServer
) -> None:
    port = free_loopback_port()
    args = bridge_args(stan, nats_server, "--health-port", str(port))
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["prometheus_client"] = None  # as if not installed
        from common_events.cli.main import main
        sys.exit(main({args!r}))
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-c", code, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    bridge = CliProcess(process)
    try:
        await bridge.wait_for_line("bridge running")
        assert (await asyncio.to_thread(get, port, "/readyz"))[0] == 200
        assert (await asyncio.to_thread(get, port, "/metrics"))[0] == 404
    finally:
        bridge.terminate()
        assert await bridge.wait() == 0, bridge.output
