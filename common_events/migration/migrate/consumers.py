"""Step 4: each durable's consumer, created at the stream sequence of its first message
(an existing consumer is left as it is); without the copy, once the stream holds what
its group acknowledged."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from common_events.errors import ConfigurationError
from common_events.migration.jetstream_stream import EventStream
from common_events.migration.migrate.options import MigrationOptions
from common_events.migration.migrate.plan import MigrationPlan
from common_events.migration.positions import ConsumerStart

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerOutcome:
    start: ConsumerStart
    stream_sequence: int
    created: bool


async def wait_for_position(
    options: MigrationOptions, stream: EventStream, plan: MigrationPlan, start: ConsumerStart
) -> None:
    """Wait until the stream holds the copy of the last message the group
    acknowledged (the bridge forwards it): the consumer starts right after it."""
    subject = next(s for s in plan.subjects if s.subject == start.group.subject)
    ledger = subject.ledger
    needed = min(start.resume_at - 1, subject.last)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.wait
    while ledger.last_origin < needed:
        async for message in stream.scan(ledger.subject, start=ledger.scanned_to + 1):
            ledger.add(message)
        if ledger.last_origin >= needed:
            return
        if ledger.native_since_copy:
            if options.at_least_once:
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
                f"{options.wait:g}s the stream still lacks the rest. Is the "
                "bridge running? (or run migrate without --no-copy)"
            )
        await asyncio.sleep(0.1)


async def create_consumer(
    stream: EventStream, plan: MigrationPlan, start: ConsumerStart
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
