"""Step 1, the plan: per subject, what the channel holds (monitor) and what the stream
holds of it (a scan of the copies' origin headers); per durable, the consumer and its
start, or why it cannot be carried over. Nothing is changed while it has a refusal."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from common_events.migration.jetstream_stream import EventStream
from common_events.migration.ledger import SubjectLedger
from common_events.migration.migrate.options import MigrationOptions
from common_events.migration.positions import (
    BRIDGE_DURABLE_PREFIX,
    ConsumerStart,
    durable_groups,
    plan_start,
)
from common_events.migration.stan_channels import channel_of, peek_unacknowledged
from common_events.transports.nats_connection import redact_url
from common_events.transports.nats_connection.monitoring import render_table
from common_events.transports.stan import StanClient
from common_events.transports.stan.monitor import MonitorSnapshot

logger = logging.getLogger(__name__)


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


async def plan_migration(
    options: MigrationOptions,
    snapshot: MonitorSnapshot,
    stan: StanClient,
    stream: EventStream | None,
    *,
    dry_run: bool,
) -> MigrationPlan:
    """Step 1, read from the STAN monitor's ``snapshot`` and the ``stream`` (``None``:
    there is none yet); a dry run changes nothing on either server."""
    subjects: list[SubjectPlan] = []
    starts: list[ConsumerStart] = []
    problems: list[str] = []
    for name in options.channels:
        channel = channel_of(snapshot, name)
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
                                stan,
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
