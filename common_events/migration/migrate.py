"""``Migration``: copy the event channels of NATS Streaming into the JetStream stream and
carry the durable positions over.

Steps (``common-events migrate`` runs them; a dry run stops after the plan):

1. plan: per subject, what the channel holds (monitor) and what the stream holds of it
   (a scan of the copies' origin headers); per durable, the consumer and its start, or
   why it cannot be carried over;
2. copy: per subject, in STAN order, what the stream lacks (``copy.py``);
3. check: scan what was stored since the plan and compare count and content hash with
   the channel's;
4. consumers: create each durable's consumer at the stream sequence of its first
   message (an existing consumer is left as it is).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from common_events.core.codec import dead_letter_subject, stream_subjects
from common_events.errors import ConfigurationError
from common_events.migration.copy import DEFAULT_WINDOW, copy_channel
from common_events.migration.defaults import default_monitor_url, event_subjects
from common_events.migration.jetstream_stream import EventStream
from common_events.migration.ledger import SubjectLedger
from common_events.migration.origin import ContentHash
from common_events.migration.positions import (
    BRIDGE_DURABLE_PREFIX,
    ConsumerSettings,
    ConsumerStart,
    durable_groups,
    plan_start,
)
from common_events.migration.progress import NoProgress, Progress
from common_events.migration.stan_channels import channel_of, peek_unacknowledged
from common_events.transports import jetstream as jetstream_transport
from common_events.transports import stan as stan_transport
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.nats_connection import redact_url
from common_events.transports.nats_connection.monitoring import render_table
from common_events.transports.stan import StanTransport
from common_events.transports.stan.monitor import MonitorSnapshot, read_monitor

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    stan_url: str
    cluster_id: str
    jetstream_url: str
    monitor_url: str | None = None
    """``None``: port 8222 of the STAN host."""
    subjects: tuple[str, ...] = ()
    """Channels to copy; empty: the six event subjects."""
    dead_letters: bool = False
    """Also copy the dead-letter channel of each subject."""
    consumers: bool = True
    copy: bool = True
    """``False``: create the consumers only, from what the stream holds (the bridge
    forwards the channels meanwhile); each waits until the stream holds its group's
    last acknowledged message, at most ``wait`` seconds."""
    queue_groups: tuple[str, ...] = ()
    """Carry over only these groups' durables (empty: every durable)."""
    wait: float = 30.0
    at_least_once: bool = False
    settings: ConsumerSettings = field(default_factory=ConsumerSettings)
    window: int = DEFAULT_WINDOW
    stan_options: dict[str, Any] = field(default_factory=dict)
    jetstream_options: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> tuple[str, ...]:
        base = self.subjects or event_subjects()
        if self.dead_letters:
            base += tuple(dead_letter_subject(s) for s in base if not s.startswith("dead-"))
        return tuple(dict.fromkeys(base))

    @property
    def monitor(self) -> str:
        return self.monitor_url or default_monitor_url(self.stan_url)


@dataclass
class SubjectPlan:
    subject: str
    on_stan: int
    first: int
    last: int
    ledger: SubjectLedger

    @property
    def in_stream(self) -> int:
        return self.ledger.copies

    @property
    def copied_up_to(self) -> int:
        return self.ledger.last_origin

    @property
    def to_copy(self) -> int:
        return max(0, self.last - max(self.copied_up_to, self.first - 1))


@dataclass
class MigrationPlan:
    stan: str
    cluster_id: str
    jetstream: str
    stream: str
    stream_exists: bool
    subjects: list[SubjectPlan]
    consumers: list[ConsumerStart]
    problems: list[str] = field(default_factory=list)
    """Refusals: nothing is changed while there is one."""

    @property
    def refusals(self) -> list[str]:
        return [*self.problems, *(c.refusal for c in self.consumers if c.refusal)]

    def render(self) -> str:
        lines = [
            f"From NATS Streaming cluster {self.cluster_id!r} at {self.stan}",
            f"to stream {self.stream} at {self.jetstream}"
            + ("" if self.stream_exists else " (does not exist yet: it will be created)"),
            "",
            render_table(
                ["SUBJECT", "ON STAN", "FIRST", "LAST", "IN STREAM", "TO COPY"],
                [
                    [
                        s.subject,
                        str(s.on_stan),
                        str(s.first),
                        str(s.last),
                        str(s.in_stream),
                        str(s.to_copy),
                    ]
                    for s in self.subjects
                ],
                numeric={1, 2, 3, 4, 5},
            ),
            "",
        ]
        if self.consumers:
            lines.append(
                render_table(
                    ["SUBJECT", "QUEUE GROUP", "DURABLE", "CONSUMER", "STARTS AT STAN #", "HOW"],
                    [
                        [
                            c.group.subject,
                            c.group.queue_group or "-",
                            c.group.durable_name,
                            c.consumer.name,
                            str(c.resume_at),
                            c.how,
                        ]
                        for c in self.consumers
                    ],
                    numeric={4},
                )
            )
        else:
            lines.append("no durable subscriptions to carry over")
        refusals = self.refusals
        if refusals:
            lines += ["", "Refused, nothing was changed:"]
            lines += [f"  - {refusal}" for refusal in refusals]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class SubjectSummary:
    subject: str
    on_stan: int
    in_stream: int
    copied: int
    stan_content: str
    stream_content: str
    duplicates: int
    out_of_order: int
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.on_stan == self.in_stream
            and self.stan_content == self.stream_content
            and self.duplicates == 0
            and self.out_of_order == 0
        )


@dataclass(frozen=True, slots=True)
class ConsumerOutcome:
    start: ConsumerStart
    stream_sequence: int
    created: bool


@dataclass
class MigrationReport:
    plan: MigrationPlan
    subjects: list[SubjectSummary]
    consumers: list[ConsumerOutcome]

    @property
    def ok(self) -> bool:
        return all(summary.ok for summary in self.subjects)

    @property
    def copied(self) -> int:
        return sum(s.copied for s in self.subjects)

    def render(self) -> str:
        if not self.subjects:
            return self._render_consumers(nothing_copied=True)
        rows = []
        for s in self.subjects:
            check = "ok" if s.ok else "MISMATCH"
            if s.duplicates or s.out_of_order:
                check += f" ({s.duplicates} twice, {s.out_of_order} out of order)"
            rows.append(
                [
                    s.subject,
                    str(s.on_stan),
                    str(s.in_stream),
                    str(s.copied),
                    s.stan_content[:12],
                    s.stream_content[:12],
                    check,
                ]
            )
        lines = [
            render_table(
                [
                    "SUBJECT",
                    "ON STAN",
                    "IN STREAM",
                    "COPIED NOW",
                    "STAN SHA-256",
                    "STREAM SHA-256",
                    "CHECK",
                ],
                rows,
                numeric={1, 2, 3},
            )
        ]
        if self.consumers:
            lines.append("")
            lines.append(self._render_consumers())
        total = sum(s.seconds for s in self.subjects)
        rate = self.copied / total if total > 0 else 0.0
        lines.append("")
        lines.append(
            f"{self.copied} message(s) copied in {total:.1f}s ({rate:,.0f} msg/s); "
            + ("every subject matches." if self.ok else "SOME SUBJECTS DO NOT MATCH.")
        )
        return "\n".join(lines)

    def _render_consumers(self, *, nothing_copied: bool = False) -> str:
        table = render_table(
            ["CONSUMER", "SUBJECT", "QUEUE GROUP", "STARTS AT STREAM #", ""],
            [
                [
                    c.start.consumer.name,
                    c.start.group.subject,
                    c.start.group.queue_group or "-",
                    str(c.stream_sequence),
                    "created" if c.created else "exists already: left as it is",
                ]
                for c in self.consumers
            ],
            numeric={3},
        )
        if nothing_copied:
            return table + "\n\nNothing copied (--no-copy); the consumers start as listed."
        return table


class Migration:
    """The connections of one migration run: ``async with Migration(options) as m``."""

    def __init__(self, options: MigrationOptions) -> None:
        self.options = options
        self._stan: StanTransport | None = None
        self._jetstream: JetStreamTransport | None = None
        self.snapshot: MonitorSnapshot | None = None

    async def __aenter__(self) -> Self:
        options = self.options
        self.snapshot = await read_monitor(options.monitor)
        monitored = self.snapshot.server.cluster_id
        if monitored and monitored != options.cluster_id:
            raise ConfigurationError(
                f"the monitor at {options.monitor} belongs to cluster "
                f"{monitored!r}, not {options.cluster_id!r}: check "
                "--cluster-id and --stan-monitor"
            )
        self._stan = await stan_transport.connect(
            options.stan_url,
            cluster_id=options.cluster_id,
            client_id=f"common-events-migrate-{os.urandom(4).hex()}",
            **options.stan_options,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for transport in (self._jetstream, self._stan):
            if transport is not None:
                await transport.close()

    async def _open_stream(self, *, create: bool) -> EventStream | None:
        if self._jetstream is None:
            options = self.options
            try:
                self._jetstream = await jetstream_transport.connect(
                    options.jetstream_url,
                    subjects=stream_subjects() if create else (),
                    stream=options.settings.stream,
                    **options.jetstream_options,
                )
            except ConfigurationError:
                if create:
                    raise
                return None  # no stream yet, and a dry run does not make one
        return EventStream(self._jetstream)

    async def plan(self, *, dry_run: bool = False) -> MigrationPlan:
        """What the run would do; a dry run changes nothing on either server."""
        options = self.options
        assert self.snapshot is not None and self._stan is not None
        stream = await self._open_stream(create=not dry_run)
        subjects: list[SubjectPlan] = []
        starts: list[ConsumerStart] = []
        problems: list[str] = []
        for name in options.channels:
            channel = channel_of(self.snapshot, name)
            first = channel.first_seq if channel is not None and channel.msgs else 1
            last = channel.last_seq if channel is not None and channel.msgs else 0
            if channel is not None:
                bridges = [
                    s.client_id
                    for s in channel.subscriptions
                    if (s.durable_name or "").startswith(BRIDGE_DURABLE_PREFIX) and not s.offline
                ]
                if bridges and options.copy:
                    problems.append(
                        f"the bridge ({', '.join(bridges)}) forwards {name!r} right now: stop "
                        "it first (migrate, then start the bridge, which goes on where the "
                        "copy ended), or pass --no-copy to create the consumers only"
                    )
                if options.consumers:
                    for group in durable_groups(channel):
                        if options.queue_groups and not {
                            group.queue_group,
                            group.durable_name,
                        } & set(options.queue_groups):
                            continue
                        unacked: list[int] | None = None
                        if not dry_run and not group.online and group.pending:
                            unacked = (
                                await peek_unacknowledged(
                                    self._stan.client,
                                    name,
                                    queue_group=group.queue_group or group.durable_name,
                                    durable_name=group.durable_name,
                                    pending=group.pending,
                                    ack_wait_seconds=max(1, group.ack_wait),
                                )
                                if group.queue_group
                                else None
                            )
                        starts.append(
                            plan_start(
                                group,
                                options.settings,
                                channel_first=first,
                                at_least_once=options.at_least_once,
                                unacknowledged=unacked,
                                dry_run=dry_run,
                            )
                        )
            wanted = [s.resume_at for s in starts if s.group.subject == name]
            ledger = SubjectLedger(name, first=first, wanted=wanted)
            if stream is not None:
                async for message in stream.scan(name):
                    ledger.add(message)
            subjects.append(SubjectPlan(name, channel.msgs if channel else 0, first, last, ledger))
        return MigrationPlan(
            stan=redact_url(options.stan_url),
            cluster_id=options.cluster_id,
            jetstream=redact_url(options.jetstream_url),
            stream=options.settings.stream,
            stream_exists=stream is not None,
            subjects=subjects,
            consumers=starts,
            problems=problems,
        )

    async def run(self, plan: MigrationPlan, progress: Progress | None = None) -> MigrationReport:
        """Copy, check and create the consumers of ``plan`` (made by ``plan()``)."""
        if plan.refusals:
            raise ConfigurationError("the plan has refusals: " + "; ".join(plan.refusals))
        progress = progress or NoProgress()
        stream = await self._open_stream(create=True)
        assert stream is not None and self._stan is not None and self._jetstream is not None
        summaries: list[SubjectSummary] = []
        for subject in plan.subjects if self.options.copy else ():
            ledger = subject.ledger
            result = await copy_channel(
                self._stan.client,
                self._jetstream,
                cluster_id=self.options.cluster_id,
                channel=subject.subject,
                first=subject.first,
                last=subject.last,
                copied_up_to=ledger.last_origin,
                progress=progress,
                window=self.options.window,
            )
            async for message in stream.scan(subject.subject, start=ledger.scanned_to + 1):
                ledger.add(message)
            summaries.append(
                _summary(subject, result.read, result.copied, result.content, result.seconds)
            )
        outcomes: list[ConsumerOutcome] = []
        for start in plan.consumers:
            if not self.options.copy:
                await self._wait_for_position(stream, plan, start)
            outcomes.append(await self._create_consumer(stream, plan, start))
        return MigrationReport(plan, summaries, outcomes)

    async def _wait_for_position(
        self, stream: EventStream, plan: MigrationPlan, start: ConsumerStart
    ) -> None:
        """Wait until the stream holds the copy of the last message the group
        acknowledged (the bridge forwards it): the consumer starts right after it."""
        subject = next(s for s in plan.subjects if s.subject == start.group.subject)
        ledger = subject.ledger
        needed = min(start.resume_at - 1, subject.last)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.wait
        while ledger.last_origin < needed:
            async for message in stream.scan(ledger.subject, start=ledger.scanned_to + 1):
                ledger.add(message)
            if ledger.last_origin >= needed:
                return
            if ledger.native_since_copy:
                if self.options.at_least_once:
                    return  # from the last copy on: what came since arrives again
                raise ConfigurationError(
                    f"{start.group.label} acknowledged {ledger.subject!r} up to STAN "
                    f"#{needed}, but the stream's copies end at #{ledger.last_origin} and "
                    f"{ledger.native_since_copy} message(s) published on JetStream follow "
                    "them (the subject is bridged to NATS Streaming): which of those the "
                    "group saw cannot be told. Move a subject's listeners before its "
                    "publishers, or pass --at-least-once to start after the last copy"
                )
            if loop.time() > deadline:
                raise ConfigurationError(
                    f"the stream holds {ledger.subject!r} up to STAN #{ledger.last_origin} "
                    f"and {start.group.label} acknowledged up to #{needed}: after "
                    f"{self.options.wait:g}s the stream still lacks the rest. Is the "
                    "bridge running? (or run migrate without --no-copy)"
                )
            await asyncio.sleep(0.1)

    async def _create_consumer(
        self, stream: EventStream, plan: MigrationPlan, start: ConsumerStart
    ) -> ConsumerOutcome:
        existing = await stream.consumer_start(start.consumer.name)
        if existing is not None:
            logger.info("consumer %s exists already; left as it is", start.consumer.name)
            return ConsumerOutcome(start, existing, created=False)
        ledger = next(s.ledger for s in plan.subjects if s.subject == start.group.subject)
        sequence = ledger.starts[start.resume_at]
        await stream.create_consumer(start.consumer, start_sequence=sequence)
        logger.info(
            "created consumer %s at stream #%d (STAN #%d)",
            start.consumer.name,
            sequence,
            start.resume_at,
        )
        return ConsumerOutcome(start, sequence, created=True)


def _summary(
    subject: SubjectPlan, read: int, copied: int, stan_content: ContentHash, seconds: float
) -> SubjectSummary:
    ledger = subject.ledger
    return SubjectSummary(
        subject=subject.subject,
        on_stan=read,
        in_stream=ledger.copies,
        copied=copied,
        stan_content=stan_content.hexdigest,
        stream_content=ledger.content.hexdigest,
        duplicates=ledger.duplicates,
        out_of_order=ledger.out_of_order,
        seconds=seconds,
    )


async def migrate(
    options: MigrationOptions, *, progress: Progress | None = None
) -> MigrationReport:
    """Plan and run a migration; ``ConfigurationError`` if the plan has refusals."""
    async with Migration(options) as migration:
        plan = await migration.plan()
        if plan.refusals:
            raise ConfigurationError("\n".join(plan.refusals))
        return await migration.run(plan, progress)


__all__ = [
    "Migration",
    "MigrationOptions",
    "MigrationPlan",
    "MigrationReport",
    "SubjectPlan",
    "SubjectSummary",
    "default_monitor_url",
    "event_subjects",
    "migrate",
]
