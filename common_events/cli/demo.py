"""``common-events demo``: the ticketing scenario, narrated, with a table at the end.

With no ``--url`` it starts ``nats-server`` from the installed ``server`` extra on a free
loopback port (JetStream, temporary directory) and stops it after; ``--url`` runs
against an existing broker (``nats://``, ``stan://`` or ``memory://``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from common_events.cli.help import HelpFormatter
from common_events.cli.scenario import Connect, Scenario, ScenarioReport
from common_events.core import Bus, connect
from common_events.core.bus import TRANSPORT_MODULES
from common_events.errors import ConfigurationError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the ticketing scenario end to end and say whether every step held",
        description=(
            "Run the ticketing scenario and narrate it: publish, a queue group splitting "
            "the work, a durable listener catching up, a retry, events applied in "
            "version order, a dead letter; then print a table of the steps. With no "
            "--url it starts nats-server from the installed server extra on a free "
            "loopback port (JetStream, temporary directory) and stops it after."
        ),
        epilog=(
            "examples:\n"
            "  common-events demo\n"
            "  common-events demo --url memory://\n"
            "  common-events demo --url stan://127.0.0.1:4222 --cluster-id ticketing"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help=(
            "run against this broker instead: nats://HOST:PORT or tls://HOST:PORT "
            "(JetStream), stan://HOST:PORT (NATS Streaming) or memory:// (in-process)"
        ),
    )
    parser.add_argument(
        "--cluster-id",
        default=None,
        metavar="ID",
        help="the NATS Streaming cluster id, with a stan:// URL (default test-cluster)",
    )
    parser.set_defaults(func=run)


def check_url(url: str) -> None:
    """Refuse a URL no transport takes before the scenario starts (a ConfigurationError
    the command line prints on one line)."""
    scheme = urlsplit(url).scheme.lower()
    if "://" not in url or scheme not in TRANSPORT_MODULES:
        known = ", ".join(f"{name}://" for name in TRANSPORT_MODULES)
        shown = f"{scheme}://" if "://" in url else url.split("@")[-1]
        raise ConfigurationError(f"not a broker URL: {shown!r}; use one of {known}")


def run(args: argparse.Namespace) -> int:
    if args.url is not None:
        check_url(args.url)
    if args.verbose == 0:
        # The narration already says when a handler fails on purpose; the tracebacks
        # the listeners log for it would only bury the story. -v shows them.
        logging.getLogger("common_events.core.listener").setLevel(logging.CRITICAL)
    return asyncio.run(run_demo(args.url, cluster_id=args.cluster_id))


@contextlib.asynccontextmanager
async def _broker_url(url: str | None) -> AsyncIterator[str]:
    if url is not None:
        yield url
        return
    from common_events.testing.servers import EmbeddedNatsServer

    async with EmbeddedNatsServer() as server:
        _say(f"Started nats-server with JetStream at {server.url} (embedded, temporary)")
        yield server.url
    _say("Stopped the embedded nats-server")


async def run_demo(url: str | None = None, *, cluster_id: str | None = None) -> int:
    options: dict[str, Any] = {}
    if cluster_id is not None:
        options["cluster_id"] = cluster_id
    try:
        async with _broker_url(url) as broker_url:
            report = await Scenario(_connector(broker_url, options), _say).run()
    except Exception as error:  # the demo explains, it does not dump a traceback
        logger.debug("demo failed", exc_info=True)
        _say(f"\nThe demo could not run: {type(error).__name__}: {error}")
        return 1
    _say("")
    _say(render_table(report))
    if report.held:
        _say("\nEvery step held.")
        return 0
    failed = ", ".join(f"{step.number} ({step.title})" for step in report.failed)
    _say(f"\nFailed step(s): {failed or 'the scenario stopped early'}")
    return 1


def _connector(url: str, options: dict[str, Any]) -> Connect:
    """How each service of the scenario gets its bus: a connection of its own, except
    in-process, where the broker lives in its one bus and every service shares it."""
    if not url.startswith("memory:"):

        async def connect_bus() -> Bus:
            return await connect(url, **options)

        return connect_bus
    shared: list[Bus] = []

    async def shared_bus() -> Bus:
        if not shared:
            shared.append(await connect(url, **options))
        return shared[0]

    return shared_bus


def render_table(report: ScenarioReport) -> str:
    rows = [("step", "what", "result", "detail")]
    rows += [
        (str(step.number), step.title, "ok" if step.held else "FAILED", step.detail)
        for step in report.steps
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def _say(text: str) -> None:
    # The CLI's output is the narration; the library itself never prints.
    print(text, file=sys.stdout, flush=True)
