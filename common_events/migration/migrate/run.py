"""``Migration``: the connections of one run, and ``migrate()``, which plans and runs."""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import Self

from common_events.core.codec import stream_subjects
from common_events.errors import ConfigurationError
from common_events.migration.jetstream_stream import EventStream
from common_events.migration.migrate.consumers import (
    ConsumerOutcome,
    create_consumer,
    wait_for_position,
)
from common_events.migration.migrate.copying import SubjectSummary, copy_subject
from common_events.migration.migrate.options import MigrationOptions
from common_events.migration.migrate.plan import MigrationPlan, plan_migration
from common_events.migration.migrate.report import MigrationReport
from common_events.migration.progress import NoProgress, Progress
from common_events.transports import jetstream as jetstream_transport
from common_events.transports import stan as stan_transport
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.stan import StanTransport
from common_events.transports.stan.monitor import MonitorSnapshot, read_monitor

logger = logging.getLogger(__name__)


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
        assert self.snapshot is not None and self._stan is not None
        stream = await self._open_stream(create=not dry_run)
        return await plan_migration(
            self.options, self.snapshot, self._stan.client, stream, dry_run=dry_run
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
            summaries.append(
                await copy_subject(
                    self.options, self._stan.client, self._jetstream, stream, subject, progress
                )
            )
        outcomes: list[ConsumerOutcome] = []
        for start in plan.consumers:
            if not self.options.copy:
                await wait_for_position(self.options, stream, plan, start)
            outcomes.append(await create_consumer(stream, plan, start))
        return MigrationReport(plan, summaries, outcomes)


async def migrate(
    options: MigrationOptions, *, progress: Progress | None = None
) -> MigrationReport:
    """Plan and run a migration; ``ConfigurationError`` if the plan has refusals."""
    async with Migration(options) as migration:
        plan = await migration.plan()
        if plan.refusals:
            raise ConfigurationError("\n".join(plan.refusals))
        return await migration.run(plan, progress)
