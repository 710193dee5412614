"""``common-events monitor [ADDRESS]``: what a broker holds, read from its monitoring port.

A NATS Streaming server shows its channels, subscriptions and clients; a nats-server
its JetStream streams, consumers (pending and ack-pending counts) and connections by
name. Which one answers is found out from the server itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from common_events.cli.help import HelpFormatter
from common_events.errors import CommonEventsError, ConfigurationError, ConnectError

DEFAULT_ADDRESS = "127.0.0.1:8222"
DEFAULT_PORT = 8222
DEFAULT_WATCH = 2.0
CLEAR_SCREEN = "\x1b[H\x1b[2J"

NATS_STREAMING = "nats-streaming"
JETSTREAM = "jetstream"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="show what a NATS Streaming server or a nats-server with JetStream holds",
        description=(
            "Read the monitoring port of a broker and print what it holds. A NATS "
            "Streaming server (nats-streaming-server -m PORT): channels (messages, "
            "sequences), their subscriptions (client, queue group, durable, offline, "
            "pending, stalled) and clients. A nats-server with JetStream (nats-server "
            "-m PORT, or http_port in its configuration): streams, consumers (queue "
            "group, whether a listener is bound, pending and ack-pending counts) and "
            "connections by name. Which kind of server answers is found out by asking it."
        ),
        epilog=(
            "examples:\n"
            "  common-events monitor 127.0.0.1:8222\n"
            "  common-events monitor http://nats-srv:8222 --watch 5\n"
            "  common-events monitor --json"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "address",
        nargs="?",
        default=DEFAULT_ADDRESS,
        metavar="ADDRESS",
        help=(
            "the server's monitoring port: HOST:PORT, HOST (port 8222) or "
            f"http(s)://HOST:PORT (default {DEFAULT_ADDRESS})"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the figures as JSON (with --watch: one document per line)",
    )
    parser.add_argument(
        "--watch",
        nargs="?",
        type=_seconds,
        const=DEFAULT_WATCH,
        metavar="SECONDS",
        help=(
            f"print again every SECONDS (default {DEFAULT_WATCH:g}) until Ctrl-C; a server "
            "that does not answer is reported and asked again"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds to wait for each monitoring endpoint (default 5)",
    )
    parser.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def monitoring_url(address: str) -> str:
    """``HOST:PORT``, ``HOST`` or ``http(s)://HOST[:PORT][/base]`` as a base URL."""
    text = address.strip()
    if not text:
        raise ConfigurationError("no monitoring address given")
    given_scheme = "://" in text
    parts = urlsplit(text if given_scheme else f"http://{text}")
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"{address!r} is not a monitoring address: the monitoring port speaks HTTP "
            f"(give HOST:PORT or http://HOST:PORT, e.g. {DEFAULT_ADDRESS}), not the "
            "client port of nats://, stan:// or tls:// URLs"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{address!r} names no host")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"{address!r}: the port is not a number from 0 to 65535") from None
    netloc = parts.netloc
    if port is None and not given_scheme:
        netloc = f"{netloc}:{DEFAULT_PORT}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def server_kind(url: str, timeout: float) -> str:
    """``nats-streaming`` or ``jetstream``: a NATS Streaming server answers its own
    endpoint, a nats-server (with JetStream or without) answers it with 404."""
    import http.client
    import urllib.error
    import urllib.request

    probe = f"{url}/streaming/serverz"
    try:
        with urllib.request.urlopen(probe, timeout=timeout):
            return NATS_STREAMING
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return JETSTREAM
        raise ConnectError(
            f"{probe} answered HTTP {exc.code}: is this the monitoring port of a "
            "nats-server or nats-streaming-server (-m PORT)?"
        ) from exc
    except http.client.HTTPException as exc:
        if str(exc).startswith("INFO {"):
            raise ConnectError(
                f"{url} answered in the NATS protocol: that is a client port, not the "
                f"monitoring port (nats-server -m PORT, often {DEFAULT_PORT})"
            ) from exc
        raise ConnectError(f"{url} did not answer HTTP: {str(exc)[:80]!r}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectError(
            f"cannot read {url}: {reason}. Is the server running with monitoring on "
            "(nats-server -m PORT, nats-streaming-server -m PORT)?"
        ) from exc


def read(url: str, timeout: float) -> tuple[str, Any, Callable[[Any], str]]:
    """(kind, snapshot, render) of the server at ``url``."""
    # Imported here: every command registers at start-up, and these need the transport
    # packages (nats-py; protobuf for NATS Streaming), which the others do not.
    if server_kind(url, timeout) == NATS_STREAMING:
        from common_events.transports.stan import monitor as stan_monitor

        return NATS_STREAMING, stan_monitor.read_monitor_sync(url, timeout), stan_monitor.render
    from common_events.transports.jetstream import monitor as jetstream_monitor

    return JETSTREAM, jetstream_monitor.read_monitor_sync(url, timeout), jetstream_monitor.render


def show(url: str, args: argparse.Namespace) -> str:
    kind, snapshot, render = read(url, args.timeout)
    if not args.json:
        text: str = render(snapshot)
        return text
    document = {"kind": kind, **asdict(snapshot)}
    document.pop("raw")
    return json.dumps(document, indent=None if args.watch else 2)


def run(args: argparse.Namespace) -> int:
    url = monitoring_url(args.address)
    if args.watch is None:
        print(show(url, args))
        return 0
    clear = sys.stdout.isatty() and not args.json
    try:
        while True:
            started = time.monotonic()
            try:
                text = show(url, args)
            except CommonEventsError as error:
                # The server may be restarting: say so on one line and ask again.
                print(
                    f"common-events monitor: {' '.join(str(error).split())}",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                if args.json:
                    print(text, flush=True)
                else:
                    stamp = datetime.now().strftime("%H:%M:%S")
                    heading = f"{stamp}, every {args.watch:g}s (Ctrl-C stops)"
                    print(f"{CLEAR_SCREEN if clear else ''}{heading}\n\n{text}\n", flush=True)
            time.sleep(max(0.0, args.watch - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0
