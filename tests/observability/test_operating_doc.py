"""docs/operating.md works as written: its logging set-up formats a delivery's fields,
its service runs on a real JetStream server with probes, traces and metrics, its
Kubernetes manifest asks the paths the endpoint serves, and its PromQL names only
metrics and labels that ``Metrics`` exports (checked against the registry: no
Prometheus server runs here)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("prometheus_client")
pytest.importorskip("yaml")

import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from common_events import Publisher, TicketCreatedEvent, connect
from common_events.observability.health import LIVENESS_PATH, METRICS_PATH, READINESS_PATH
from common_events.observability.otel import Tracing
from common_events.observability.prometheus import Metrics
from common_events.testing.servers import EmbeddedNatsServer, free_loopback_port

pytestmark = pytest.mark.timeout(90)

DOC = Path(__file__).resolve().parents[2] / "docs" / "operating.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def service_block() -> str:
    (block,) = [block for block in blocks("python") if "run_service" in block]
    return block


def test_every_python_block_compiles() -> None:
    assert len(blocks("python")) == 2
    for block in blocks("python"):
        compile(block, str(DOC), "exec")


def test_the_logging_set_up_writes_a_json_line_with_the_delivery_fields() -> None:
    (block,) = [block for block in blocks("python") if "JsonLines" in block]
    script = block + (
        "\nlogging.getLogger('common_events.core.listener.Orders').warning(\n"
        "    'handler failed', extra={'subject': 'ticket:created', 'sequence': 7,\n"
        "    'delivery_count': 2, 'queue_group': 'orders-service', 'listener': 'Orders'})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    entry = json.loads(line)
    del entry["time"]
    assert entry == {
        "level": "WARNING",
        "logger": "common_events.core.listener.Orders",
        "message": "handler failed",
        "subject": "ticket:created",
        "sequence": 7,
        "delivery_count": 2,
        "queue_group": "orders-service",
        "listener": "Orders",
    }


FAILING_LISTENER = """
import asyncio

from common_events import Listener, Message, Publisher, TicketCreatedEvent, connect


class Orders(Listener[TicketCreatedEvent]):
    queue_group = "orders-service"
    max_deliveries = 1
    called = asyncio.Event()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.called.set()
        raise ValueError("no such ticket")


class Tickets(Publisher[TicketCreatedEvent]):
    pass


async def main() -> None:
    async with await connect("memory://") as bus:
        listener = await Orders(bus).listen()
        await Tickets(bus).publish(
            TicketCreatedEvent(id="t1", version=0, title="x", price=1, user_id="u")
        )
        async with asyncio.timeout(10):
            await listener.called.wait()
            await listener.wait_idle()


asyncio.run(main())
"""


def test_a_failing_handler_logs_one_json_line_with_the_delivery_fields() -> None:
    (block,) = [block for block in blocks("python") if "JsonLines" in block]
    result = subprocess.run(
        [sys.executable, "-c", block + FAILING_LISTENER],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    (failure,) = [entry for entry in entries if entry["level"] == "ERROR"]
    assert "ValueError: no such ticket" in failure["message"].splitlines()[0]
    assert failure["logger"] == "common_events.core.listener.Orders"
    fields = {key: failure[key] for key in JSON_FIELDS}
    assert fields == {
        "subject": "ticket:created",
        "sequence": 1,
        "delivery_count": 1,
        "queue_group": "orders-service",
        "listener": "Orders",
    }
    assert "Traceback" in failure["exception"]


JSON_FIELDS = ("subject", "sequence", "delivery_count", "queue_group", "listener")


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()
    except OSError:
        return 0, ""


async def poll(url: str, found: str, *, within: float = 30.0) -> str:
    async with asyncio.timeout(within):
        while True:
            status, body = await asyncio.to_thread(fetch, url)
            if status == 200 and found in body:
                return body
            await asyncio.sleep(0.1)


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


async def test_the_service_example_serves_probes_traces_and_metrics(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    script = tmp_path / "service.py"
    script.write_text(service_block())
    port = free_loopback_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COMMON_EVENTS_URL": nats_server.url, "HEALTH_PORT": str(port)},
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        base = f"http://127.0.0.1:{port}"
        await poll(base + READINESS_PATH, "ok")
        assert (await asyncio.to_thread(fetch, base + LIVENESS_PATH)) == (200, "ok\n")

        async with await connect(
            nats_server.url, middleware=[Tracing(tracer_provider=provider)]
        ) as bus:
            await TicketCreatedPublisher(bus).publish(
                TicketCreatedEvent(id="t1", version=0, title="x", price=1, user_id="u")
            )
        metrics = await poll(
            base + METRICS_PATH,
            'common_events_handled_deliveries_total{outcome="acked",'
            'queue_group="orders-service",subject="ticket:created"} 1.0',
        )
        assert "common_events_handlers_in_flight" in metrics

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        provider.shutdown()

    out = stdout.decode()

    assert out.startswith("ticket t1\n")
    # The console exporter prints each span as JSON objects, one after another.
    decoder = json.JSONDecoder()
    text, spans = out.removeprefix("ticket t1\n"), []
    while text.strip():
        span, end = decoder.raw_decode(text.lstrip())
        spans.append(span)
        text = text.lstrip()[end:]
    (process_span,) = [span for span in spans if span["name"] == "process ticket:created"]
    (send,) = exporter.get_finished_spans()
    assert send.context is not None
    assert process_span["context"]["trace_id"] == f"0x{send.context.trace_id:032x}"
    assert process_span["parent_id"] == f"0x{send.context.span_id:016x}"
    assert process_span["resource"]["attributes"]["service.name"] == "orders"


def test_the_kubernetes_probes_ask_what_the_endpoint_serves() -> None:
    (block,) = blocks("yaml")
    manifest = yaml.safe_load(block)
    annotations = manifest["metadata"]["annotations"]
    (container,) = manifest["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    (port,) = container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": READINESS_PATH, "port": "health"}
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert annotations["prometheus.io/port"] == env["HEALTH_PORT"] == str(port["containerPort"])
    assert f'os.environ.get("HEALTH_PORT", "{env["HEALTH_PORT"]}")' in service_block()
    # The probe waits longer than the endpoint's default liveness_timeout (1 s).
    assert container["livenessProbe"]["timeoutSeconds"] > 1
    # A SIGTERM leaves run_service its default drain_timeout (10 s) and more.
    assert manifest["spec"]["terminationGracePeriodSeconds"] > 10


def exported() -> dict[str, set[str]]:
    """Every sample name ``Metrics`` exports, with its label names."""
    registry = CollectorRegistry()
    Metrics(registry)
    names: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",)}
    labels = {
        "common_events_published_messages": {"subject", "outcome"},
        "common_events_publish_duration_seconds": {"subject"},
        "common_events_handled_deliveries": {"subject", "queue_group", "outcome"},
        "common_events_handler_duration_seconds": {"subject", "queue_group"},
        "common_events_handlers_in_flight": {"subject", "queue_group"},
    }
    for metric in registry.collect():
        for suffix in suffixes[metric.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            names[metric.name + suffix] = labels[metric.name] | extra
    return names


def test_the_promql_names_only_exported_metrics_and_their_labels() -> None:
    queries = blocks("promql")
    assert len(queries) == 6
    names = exported()
    for query in queries:
        assert query.count("(") == query.count(")"), query
        used = set(re.findall(r"\bcommon_events_[a-z_]+", query))
        assert used and used <= set(names), used - set(names)
        allowed = set().union(*(names[name] for name in used))
        grouped = {
            label.strip()
            for group in re.findall(r"by \(([^)]*)\)", query)
            for label in group.split(",")
        }
        matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?", query))
        assert grouped | matched <= allowed, (query, (grouped | matched) - allowed)
    outcomes = set(re.findall(r'outcome=~?"([^"]+)"', "".join(queries)))
    assert {part for value in outcomes for part in value.split("|")} <= {
        "acked", "retried", "out_of_order", "dead_lettered", "not_acked",
        "left_for_redelivery", "not_settled",
    }


def test_the_install_commands_name_the_package_s_extras() -> None:
    import tomllib

    (block,) = blocks("console")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    wanted = [re.fullmatch(r"pip install 'common-events\[(\w+)\]'", c) for c in commands]
    assert all(wanted), commands
    extras = tomllib.loads((DOC.parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    requirements = {"otel": "opentelemetry-api", "prometheus": "prometheus-client"}
    for match in wanted:
        assert match is not None
        extra = match.group(1)
        assert extra in extras, f"pyproject.toml has no {extra!r} extra"
        assert any(r.startswith(requirements[extra]) for r in extras[extra]), extras[extra]
