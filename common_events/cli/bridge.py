"""``common-events bridge``: forward events live between NATS Streaming and JetStream
while services move one at a time (``common_events.migration.bridge``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import textwrap
from typing import TYPE_CHECKING

from common_events.cli._brokers import add_server_arguments

if TYPE_CHECKING:
    from common_events.core import RunningService
    from common_events.migration.bridge import Bridge
    from common_events.migration.bridge.metrics import BridgeMetrics
    from common_events.observability.health import HealthEndpoint

logger = logging.getLogger(__name__)

DESCRIPTION = textwrap.dedent(
    """\
    Forward events live between a NATS Streaming server and the JetStream stream, so
    that services can move from one to the other one at a time.

    Each subject is bridged one way:
      --to-jetstream SUBJECT  while its publishers are still on NATS Streaming: the
                              bridge is a durable STAN subscriber with manual acks and
                              acknowledges a message on STAN only once the stream has
                              stored it, with the origin headers and Nats-Msg-Id that
                              `common-events migrate` uses;
      --to-stan SUBJECT       once its publishers are on JetStream but some listeners
                              are not: a durable JetStream consumer, acknowledged only
                              once NATS Streaming has stored the message; messages that
                              came from STAN are never sent back.
    Without --to-jetstream, every event subject not given to --to-stan is bridged to
    JetStream. A subject is never bridged both ways.

    Nothing is lost or stored twice when the bridge, the STAN server or the NATS server
    restarts: the bridge finds the last copy in the stream by its Stan-Sequence header,
    and checks the channel before sending a message to STAN again. Run `migrate` first
    for the history and the durable positions; the bridge goes on where the copy ended.
    It keeps the same client id and durable names on every start (so its durables
    resume): run one bridge per pair of servers.

    SIGTERM or SIGINT drains: no new message is taken, the ones in hand are finished
    (up to --drain-timeout), the durables stay. A connection lost for good ends the
    bridge with status 1, for its supervisor to restart it.

    --health-port serves /livez and /readyz as a service's health endpoint does, and,
    where prometheus-client is installed (the prometheus extra), /metrics:
      common_events_bridged_messages_total{direction,subject,outcome}
          outcome forwarded or already_there; direction to_jetstream or to_stan
      common_events_bridge_failures_total{direction,subject,step}
          step publish, ack or ledger (each is tried again, or comes back)
      common_events_bridge_lag_seconds{direction,subject}
          from a message's storing on one side to its confirmation on the other
      common_events_bridge_last_source_sequence{direction,subject}
          where the bridge is on the side the subject comes from"""
)

EPILOG = textwrap.dedent(
    """\
    examples:
      every event subject from NATS Streaming to JetStream:
        common-events bridge --from stan://stan:4222 --cluster-id ticketing \\
            --to nats://nats:4222
      the orders service has moved to JetStream; tickets still listens on STAN:
        common-events bridge --from stan://stan:4222 --cluster-id ticketing \\
            --to nats://nats:4222 --to-stan order:created --to-stan order:cancelled

    The cut-over step by step: docs/migrating-to-jetstream.md."""
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bridge",
        help="forward events live between NATS Streaming and JetStream during a move",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(
        parser,
        required=True,
        monitor_help="monitoring endpoint of the STAN server, needed by --to-stan "
        "(default http://<STAN host>:8222)",
    )
    directions = parser.add_argument_group("subjects")
    directions.add_argument(
        "--to-jetstream",
        action="append",
        default=[],
        metavar="SUBJECT",
        help="forward this channel to the stream (repeatable)",
    )
    directions.add_argument(
        "--to-stan",
        action="append",
        default=[],
        metavar="SUBJECT",
        help="forward this subject from the stream to its channel (repeatable)",
    )
    running = parser.add_argument_group("running")
    running.add_argument(
        "--client-id",
        default="common-events-bridge",
        help="STAN client id, the same on every start (default common-events-bridge)",
    )
    running.add_argument(
        "--durable",
        default="common-events-bridge",
        help="durable name of its subscriptions; starts with common-events-bridge",
    )
    running.add_argument(
        "--ack-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="redelivery delay of an unacknowledged message on either side (default 30)",
    )
    running.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long SIGTERM waits for the messages in hand (default 10)",
    )
    running.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="serve /livez and /readyz on PORT, as a service's health endpoint does, and "
        "/metrics where prometheus-client is installed",
    )
    running.add_argument(
        "--metrics",
        action="store_true",
        help="require /metrics on --health-port: fail at once without prometheus-client "
        "(pip install 'common-events[prometheus]')",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from common_events.errors import CommonEventsError
    from common_events.migration import event_subjects
    from common_events.migration.bridge import Bridge, BridgeOptions

    if args.metrics and args.health_port is None:
        print("common-events bridge: --metrics serves on --health-port: give both", file=sys.stderr)
        return 2
    metrics: BridgeMetrics | None = None
    if args.health_port is not None:
        try:
            metrics = _metrics()
        except ImportError as missing:
            if args.metrics:
                print(f"common-events bridge: {missing}", file=sys.stderr)
                return 1
            logger.info("no /metrics on the health port: %s", missing)
    to_stan = tuple(dict.fromkeys(args.to_stan))
    to_jetstream = tuple(dict.fromkeys(args.to_jetstream)) or tuple(
        subject for subject in event_subjects() if subject not in to_stan
    )
    try:
        bridge = Bridge(
            BridgeOptions(
                stan_url=args.stan_url,
                cluster_id=args.cluster_id,
                jetstream_url=args.jetstream_url,
                to_jetstream=to_jetstream,
                to_stan=to_stan,
                client_id=args.client_id,
                durable_name=args.durable,
                stream=args.stream,
                ack_wait=args.ack_wait,
                drain_timeout=args.drain_timeout,
                monitor_url=args.stan_monitor,
            ),
            metrics=metrics,
        )
        asyncio.run(_run(bridge, args.health_port))
    except CommonEventsError as error:
        print(f"common-events bridge: {error}", file=sys.stderr)
        return 1
    return 0


async def _run(bridge: Bridge, health_port: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    health: tuple[HealthEndpoint, RunningService] | None = None
    try:
        task = asyncio.ensure_future(bridge.run(stop))
        while not bridge.started and not task.done():
            await asyncio.wait({task}, timeout=0.05)
        if bridge.started:
            if health_port is not None:
                health = await _serve_health(bridge, health_port)
            print(f"bridge running: {bridge.describe()}", flush=True)
        await task
    finally:
        if health is not None:
            health[1].draining = True
            await health[0].close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    print(
        "bridge stopped: "
        + "; ".join(
            f"{name}: {stats.forwarded} forwarded, {stats.skipped} there already"
            for name, stats in bridge.stats.items()
        ),
        flush=True,
    )


async def _serve_health(bridge: Bridge, port: int) -> tuple[HealthEndpoint, RunningService]:
    from common_events.core import Bus, RunningService
    from common_events.observability.health import HealthEndpoint

    assert bridge.jetstream is not None
    # Readiness follows the JetStream connection; a STAN session lost for good ends the
    # bridge, and liveness with it.
    service = RunningService(Bus(bridge.jetstream), ())
    service.started = True
    registry = bridge.metrics.registry if bridge.metrics is not None else None
    endpoint = HealthEndpoint(port, registry=registry)
    await endpoint.start(service)
    return endpoint, service


def _metrics() -> BridgeMetrics:
    """The bridge's metrics in the default registry (the process is the bridge's alone;
    that registry also has its CPU and memory); ``ImportError``, which says what to
    install, without prometheus-client."""
    from common_events.migration.bridge.metrics import BridgeMetrics

    # Imported once BridgeMetrics is: its ImportError is the one that says what to do.
    default = importlib.import_module("prometheus_client").REGISTRY
    return BridgeMetrics(default)
