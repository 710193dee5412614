"""Steps 2 and 3 for one subject: copy what the stream lacks, in STAN order
(``migration/copy.py``), then scan what was stored since the plan and compare count and
content hash with the channel's."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from common_events.migration.copy import copy_channel
from common_events.migration.jetstream_stream import EventStream
from common_events.migration.migrate.options import MigrationOptions
from common_events.migration.migrate.plan import SubjectPlan
from common_events.migration.origin import ContentHash
from common_events.migration.progress import Progress
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.stan import StanClient

logger = logging.getLogger(__name__)


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


async def copy_subject(
    options: MigrationOptions,
    stan: StanClient,
    jetstream: JetStreamTransport,
    stream: EventStream,
    subject: SubjectPlan,
    progress: Progress,
) -> SubjectSummary:
    """Copy what the stream lacks of ``subject``, then check what it holds."""
    ledger = subject.ledger
    result = await copy_channel(
        stan,
        jetstream,
        cluster_id=options.cluster_id,
        channel=subject.subject,
        first=subject.first,
        last=subject.last,
        copied_up_to=ledger.last_origin,
        progress=progress,
        window=options.window,
    )
    async for message in stream.scan(subject.subject, start=ledger.scanned_to + 1):
        ledger.add(message)
    return _summary(subject, result.read, result.copied, result.content, result.seconds)


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
