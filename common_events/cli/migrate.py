"""``common-events migrate``: copy NATS Streaming's event channels into JetStream and
carry the durable positions over (``common_events.migration``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import textwrap

from common_events.cli._brokers import add_server_arguments

logger = logging.getLogger(__name__)

EXIT_REFUSED = 2

DESCRIPTION = textwrap.dedent(
    """\
    Copy the event channels of a NATS Streaming server into the JetStream stream, and
    create for each durable queue group the JetStream consumer that the package's
    Listener uses for that group and subject, starting after the last message the group
    acknowledged on NATS Streaming.

    What it does, per subject (the six event subjects unless --subject is given):
      - copies the messages in STAN order; each copy keeps its payload byte for byte
        and carries its origin in the headers Stan-Channel, Stan-Sequence and
        Stan-Timestamp (nanoseconds), with Nats-Msg-Id stan:<cluster>:<channel>:<seq>;
      - copies only what the stream lacks: the last copy's Stan-Sequence says where to
        go on, so running it again, or after it was interrupted (even killed), copies
        nothing twice and skips nothing, whatever the stream's duplicate window;
      - shows progress (copied / total, rate, time left) on a terminal, and plain lines
        otherwise;
      - ends with a summary per subject: messages on STAN and in the stream, and a
        SHA-256 over the payloads (with their sequences) on each side, which must match.

    Durable positions are read from the server's monitoring endpoint (--stan-monitor,
    by default port 8222 of the STAN host; the server needs -m 8222). A position is
    exact only while the group is stopped and has acknowledged everything: while a
    member is online or messages are unacknowledged, migrate refuses and says what to
    do (stop that service first), unless --at-least-once is given, which starts the
    consumer at the oldest message the group may not have acknowledged. A consumer that
    exists already is left as it is. Nothing is changed while anything is refused.

    Exit status: 0 when every subject matches, 1 on an error or a mismatch, 2 when
    refused."""
)

EPILOG = textwrap.dedent(
    """\
    examples:
      see what would happen (changes nothing on either server):
        common-events migrate --from stan://stan:4222 --cluster-id ticketing \\
            --to nats://nats:4222 --dry-run
      copy and carry the positions over (services stopped on STAN):
        common-events migrate --from stan://stan:4222 --cluster-id ticketing \\
            --to nats://nats:4222
      one service moved while the bridge runs (after stopping it on STAN):
        common-events migrate --from stan://stan:4222 --cluster-id ticketing \\
            --to nats://nats:4222 --no-copy --queue-group orders-service
      the consumer settings a Node member of a queue group uses (JSON, no server):
        common-events migrate --describe-consumers orders-service

    The cut-over of a whole system, step by step: docs/migrating-to-jetstream.md."""
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="copy NATS Streaming channels and durable positions into JetStream",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(
        parser,
        required=False,
        monitor_help="monitoring endpoint of the STAN server (default http://<STAN host>:8222)",
    )
    what = parser.add_argument_group("what to copy")
    what.add_argument(
        "--subject",
        action="append",
        default=[],
        metavar="SUBJECT",
        help="a channel to copy (repeatable; default: the six event subjects)",
    )
    what.add_argument(
        "--dead-letters",
        action="store_true",
        help="also copy each subject's dead-letter channel (dead-letter:<subject>)",
    )
    what.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (subjects, counts, consumers and where they start) and change nothing",
    )
    consumers = parser.add_argument_group("durable positions")
    consumers.add_argument(
        "--no-consumers",
        action="store_true",
        help="copy only; create no consumers (and refuse nothing about the durables)",
    )
    consumers.add_argument(
        "--queue-group",
        action="append",
        default=[],
        metavar="GROUP",
        help="carry over only this queue group's durables (repeatable; default: all), to "
        "move one service at a time",
    )
    consumers.add_argument(
        "--no-copy",
        action="store_true",
        help="create the consumers only, while the bridge forwards the channels: each "
        "waits (up to --wait) until the stream holds its group's last acknowledged message",
    )
    consumers.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --no-copy, how long to wait for the bridge (default 30)",
    )
    consumers.add_argument(
        "--at-least-once",
        action="store_true",
        help="carry over durables that are online or have unacknowledged messages, "
        "starting at the oldest message they may not have acknowledged",
    )
    consumers.add_argument(
        "--ack-wait",
        type=float,
        metavar="SECONDS",
        help="ack wait of the consumers (default: the STAN subscription's)",
    )
    consumers.add_argument(
        "--max-in-flight",
        type=int,
        metavar="N",
        help="max ack pending of the consumers (default: the STAN subscription's)",
    )
    consumers.add_argument(
        "--max-deliveries",
        type=int,
        default=10,
        metavar="N",
        help="the listeners' max_deliveries (default 10, the Listener's)",
    )
    consumers.add_argument(
        "--deliver-prefix",
        default="_INBOX.common-events",
        help="deliver subject prefix of the consumers (the JetStream transport's option)",
    )
    consumers.add_argument(
        "--describe-consumers",
        metavar="QUEUE_GROUP",
        help="print, as JSON, the consumers a member of QUEUE_GROUP binds to (for a Node "
        "service joining Python ones) and exit; needs no server",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=256,
        metavar="N",
        help="publishes waiting for the stream's confirmation at once (default 256)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.describe_consumers:
        return _describe(args)
    missing = [
        flag
        for flag, value in (("--from", args.stan_url), ("--to", args.jetstream_url))
        if not value
    ]
    if missing:
        print(
            f"common-events migrate: {' and '.join(missing)} needed (see --help)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    return asyncio.run(_migrate(args))


def _describe(args: argparse.Namespace) -> int:
    from common_events.migration import event_subjects
    from common_events.migration.describe import describe_consumers

    description = describe_consumers(
        args.describe_consumers,
        args.subject or event_subjects(),
        ack_wait=args.ack_wait or 5.0,
        max_in_flight=args.max_in_flight or 16,
        max_deliveries=args.max_deliveries,
        stream=args.stream,
        deliver_prefix=args.deliver_prefix,
    )
    print(json.dumps(description, indent=2))
    return 0


async def _migrate(args: argparse.Namespace) -> int:
    # Imported here: every command registers at start-up, and this one needs both
    # transports.
    from common_events.errors import CommonEventsError
    from common_events.migration import ConsumerSettings, Migration, MigrationOptions
    from common_events.migration.progress import progress_for

    options = MigrationOptions(
        stan_url=args.stan_url,
        cluster_id=args.cluster_id,
        jetstream_url=args.jetstream_url,
        monitor_url=args.stan_monitor,
        subjects=tuple(args.subject),
        dead_letters=args.dead_letters,
        consumers=not args.no_consumers,
        copy=not args.no_copy,
        queue_groups=tuple(args.queue_group),
        wait=args.wait,
        at_least_once=args.at_least_once,
        settings=ConsumerSettings(
            stream=args.stream,
            deliver_prefix=args.deliver_prefix,
            ack_wait=args.ack_wait,
            max_in_flight=args.max_in_flight,
            max_deliveries=args.max_deliveries,
        ),
        window=args.window,
    )
    try:
        async with Migration(options) as migration:
            plan = await migration.plan(dry_run=args.dry_run)
            print(plan.render(), flush=True)
            if args.dry_run:
                print("\nDry run: nothing was changed.")
                return 0
            if plan.refusals:
                return EXIT_REFUSED
            print(flush=True)
            report = await migration.run(plan, progress_for(sys.stderr))
            print(report.render(), flush=True)
            return 0 if report.ok else 1
    except CommonEventsError as error:
        print(f"common-events migrate: {error}", file=sys.stderr)
        return 1
