"""What a migration did: per subject the check, per durable its consumer, as a table."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from common_events.migration.migrate.consumers import ConsumerOutcome
from common_events.migration.migrate.copying import SubjectSummary
from common_events.migration.migrate.plan import MigrationPlan
from common_events.transports.nats_connection.monitoring import render_table

logger = logging.getLogger(__name__)


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
