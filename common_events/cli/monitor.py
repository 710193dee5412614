"""``common-events monitor URL``: a NATS Streaming server's channels and subscriptions."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict

DEFAULT_URL = "http://127.0.0.1:8222"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="show a NATS Streaming server's channels, subscriptions and clients",
        description=(
            "Read the monitoring endpoints of nats-streaming-server (started with "
            "-m PORT) and print channels (messages, last sequence) and their "
            "subscriptions (client, queue group, durable, offline, pending, stalled)."
        ),
    )
    parser.add_argument(
        "url", nargs="?", default=DEFAULT_URL, help=f"monitoring URL (default {DEFAULT_URL})"
    )
    parser.add_argument("--json", action="store_true", help="print the parsed figures as JSON")
    parser.add_argument(
        "--watch", type=float, metavar="SECONDS", help="print again every SECONDS until Ctrl-C"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each endpoint"
    )
    parser.set_defaults(func=run)


def _show(args: argparse.Namespace) -> int:
    # Imported here: every command registers at start-up, and this one needs the STAN
    # transport package (nats-py, protobuf), which the others do not.
    from common_events.transports.stan.monitor import MonitorError, read_monitor, render

    try:
        snapshot = asyncio.run(read_monitor(args.url, http_timeout=args.timeout))
    except MonitorError as exc:
        print(f"common-events monitor: {exc}", file=sys.stderr)
        return 1
    if args.json:
        document = asdict(snapshot)
        document.pop("raw")
        print(json.dumps(document, indent=2))
    else:
        print(render(snapshot))
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.watch:
        return _show(args)
    try:
        while True:
            _show(args)
            print(flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
