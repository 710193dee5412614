"""What ``migrate`` and ``bridge`` share: the pair of servers they work between, as
command-line options (``--from`` NATS Streaming and its ``--cluster-id``, ``--to``
JetStream and its ``--stream``, and ``--stan-monitor``)."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)

DEFAULT_CLUSTER_ID = "test-cluster"
DEFAULT_STREAM = "EVENTS"


def add_server_arguments(
    parser: argparse.ArgumentParser, *, required: bool, monitor_help: str
) -> None:
    """The "servers" group: ``args.stan_url``, ``args.cluster_id``, ``args.jetstream_url``,
    ``args.stan_monitor`` and ``args.stream``. ``required``: ``--from`` and ``--to``
    must be given (else the command checks them itself, for its modes that need no
    server); ``monitor_help``: what the command reads ``--stan-monitor`` for."""
    servers = parser.add_argument_group("servers")
    servers.add_argument(
        "--from",
        dest="stan_url",
        metavar="STAN_URL",
        required=required,
        help="the NATS Streaming server (stan://[user:pass@]host:4222)",
    )
    servers.add_argument(
        "--cluster-id",
        default=DEFAULT_CLUSTER_ID,
        help=f"its cluster id (nats-streaming-server -cid; default {DEFAULT_CLUSTER_ID})",
    )
    servers.add_argument(
        "--to",
        dest="jetstream_url",
        metavar="NATS_URL",
        required=required,
        help="the NATS server with JetStream (nats://[user:pass@]host:4222)",
    )
    servers.add_argument("--stan-monitor", metavar="URL", help=monitor_help)
    servers.add_argument(
        "--stream", default=DEFAULT_STREAM, help=f"the JetStream stream (default {DEFAULT_STREAM})"
    )
