"""What the observability middlewares cost on consume: Tracing and Metrics against none.

    python benchmarks/observability_bench.py [--messages N] [--repeat R] [--only memory|jetstream]

For each transport (memory, and JetStream on a throwaway ``nats-server``), stores
``--messages`` ``ticket:created`` events, then times a ``Listener`` that decodes,
validates and acknowledges every one of them, with the bus's middleware:

- ``none``: no middleware (the baseline);
- ``pass-through``: a middleware whose ``handle`` only calls the next: what running
  any middleware at all costs, for comparison;
- ``tracing``: ``Tracing()`` on an OpenTelemetry SDK ``TracerProvider`` (its default
  ``BatchSpanProcessor`` settings) that records every span and hands it to an exporter
  that drops it: the SDK's work on each span counts, no network;
- ``tracing 10%``: the same with ``TraceIdRatioBased(0.1)``: one span in ten recorded;
- ``tracing off``: ``Tracing()`` on the API's no-op provider (the ``otel`` extra
  installed, no SDK configured): the middleware's own work, extracting the context
  included;
- ``metrics``: ``Metrics(CollectorRegistry())``.

The events are published with trace context in their headers, as a traced publisher
sends them, so the consumer extracts a parent on every delivery. Runs alternate between
the configurations; each figure is the best of ``--repeat``. Prints, per configuration,
messages per second and the process's CPU time per message (all threads: the span
processor's too), and the overhead against the baseline in CPU per message, which a
busy machine disturbs less than the rate (goal: under 15%).
Needs the ``otel`` and ``prometheus`` extras and ``opentelemetry-sdk``; JetStream needs
the ``server`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased  # noqa: E402
from opentelemetry.trace import NoOpTracerProvider  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from common_events import (  # noqa: E402
    Bus,
    Listener,
    Message,
    Publisher,
    TicketCreatedEvent,
    connect,
)
from common_events.core import DeliveryContext, HandleNext, Middleware, Outcome  # noqa: E402
from common_events.observability.otel import Tracing  # noqa: E402
from common_events.observability.prometheus import Metrics  # noqa: E402
from common_events.testing.servers import EmbeddedNatsServer  # noqa: E402
from common_events.transports.memory import MemoryBroker  # noqa: E402

GOAL = 0.15
EVENT = TicketCreatedEvent(
    id="5f0b1c2d3e4f5a6b7c8d9e0f", version=0, title="Concert", price=20.0, user_id="u-1"
)


class Dropping(SpanExporter):
    """Takes every span and keeps none: the SDK's cost without an exporter's I/O."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class PassThrough(Middleware):
    async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
        return await call_next(context)


@dataclass(frozen=True)
class Result:
    messages: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_per_message(self) -> float:
        return self.cpu_seconds / self.messages


class Counting(Listener[TicketCreatedEvent]):
    """Decodes, validates and acknowledges; says when it has seen ``expected``."""

    queue_group = "bench"
    max_in_flight = 256
    ack_wait = 30.0

    def __init__(self, bus: Bus, expected: int) -> None:
        super().__init__(bus)
        self.expected = expected
        self.handled = 0
        self.done = asyncio.Event()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        await msg.ack()
        self.handled += 1
        if self.handled >= self.expected:
            self.done.set()


class Bench:
    def __init__(self, url: str, messages: int) -> None:
        self.url = url
        self.messages = messages
        self.runs = 0
        # One broker for every connection of the memory runs, as one server for JetStream.
        self.options: dict[str, object] = (
            {"broker": MemoryBroker()} if url.startswith("memory") else {}
        )
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(Dropping()))
        self.sampled = TracerProvider(sampler=TraceIdRatioBased(0.1))
        self.sampled.add_span_processor(BatchSpanProcessor(Dropping()))

    def middleware(self, name: str) -> list[Middleware]:
        if name == "tracing":
            return [Tracing(tracer_provider=self.provider)]
        if name == "tracing 10%":
            return [Tracing(tracer_provider=self.sampled)]
        if name == "tracing off":
            return [Tracing(tracer_provider=NoOpTracerProvider())]
        if name == "metrics":
            return [Metrics(CollectorRegistry())]
        if name == "pass-through":
            return [PassThrough()]
        return []

    def shutdown(self) -> None:
        self.provider.shutdown()
        self.sampled.shutdown()

    async def store(self) -> None:
        """Publish the events once, with trace context, as a traced publisher does."""
        tracing = Tracing(tracer_provider=self.provider)
        async with await connect(self.url, middleware=[tracing], **self.options) as bus:
            results = await TicketCreatedPublisher(bus).publish_many([EVENT] * self.messages)
        failed = [result for result in results if isinstance(result, Exception)]
        if failed:
            raise failed[0]

    async def consume(self, name: str) -> Result:
        self.runs += 1
        # A fresh queue group, so a fresh durable, on every run: it starts at the first
        # message stored and never sees another run's acknowledgements.
        listener_class = type(
            f"Counting{self.runs}", (Counting,), {"queue_group": f"bench-{self.runs}"}
        )
        async with await connect(self.url, middleware=self.middleware(name), **self.options) as bus:
            listener = listener_class(bus, self.messages)
            started, cpu = time.perf_counter(), time.process_time()
            await listener.listen()
            async with asyncio.timeout(120):
                await listener.done.wait()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            await listener.close()
        return Result(self.messages, seconds, cpu)


NAMES = ("none", "pass-through", "tracing", "tracing 10%", "tracing off", "metrics")


async def run_transport(
    label: str, url: str, messages: int, repeat: int, report: Callable[[str], None]
) -> dict[str, Result]:
    bench = Bench(url, messages)
    best: dict[str, Result] = {}
    await bench.store()
    # One warm-up round, not counted.
    for name in NAMES:
        await bench.consume(name)
    for _ in range(repeat):
        for name in NAMES:
            result = await bench.consume(name)
            if name not in best or result.seconds < best[name].seconds:
                best[name] = result
    base = best["none"]
    report(f"{label}: {messages} messages, best of {repeat}")
    for name in NAMES:
        result = best[name]
        line = (
            f"  {name:<12} {result.rate:>9,.0f} msg/s  "
            f"{result.cpu_per_message * 1e6:6.1f} us CPU/msg"
        )
        if name != "none":
            cpu = result.cpu_per_message / base.cpu_per_message - 1
            rate = 1 - result.rate / base.rate
            verdict = "within" if cpu < GOAL else "over"
            line += f"  overhead {cpu:+.0%} CPU, {rate:+.0%} rate ({verdict} {GOAL:.0%})"
        report(line)
    bench.shutdown()
    return best


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("memory", "jetstream"))
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}")
    if args.only in (None, "memory"):
        await run_transport("memory", "memory://", args.messages, args.repeat, print)
    if args.only in (None, "jetstream"):
        async with EmbeddedNatsServer() as server:
            await run_transport("jetstream", server.url, args.messages, args.repeat, print)


if __name__ == "__main__":
    asyncio.run(main())
