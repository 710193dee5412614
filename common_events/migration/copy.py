"""Copying one channel into the stream: in STAN order, pipelined, nothing twice.

The channel is read from its first sequence: every message goes into the channel's
content hash, and those after the last one already copied are published with their
origin headers. Up to ``window`` publishes wait for their confirmation at once; they
leave in sequence order on one connection, so the stream stores them in that order, and
what it holds after an interruption (even SIGKILL) is a prefix of the channel, which
the next run finds by the last copy's origin header. A failed publish stops the copy:
what was confirmed stays, and the next run goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from common_events.errors import TransportError
from common_events.migration.origin import ContentHash, Origin
from common_events.migration.progress import Progress
from common_events.migration.stan_channels import read_channel
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.stan import StanClient

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 256


class CopyFailed(TransportError):
    """A publish to the stream failed; what was confirmed before it is kept."""


@dataclass(frozen=True, slots=True)
class CopyResult:
    subject: str
    read: int
    copied: int
    content: ContentHash
    seconds: float


async def copy_channel(
    stan: StanClient,
    jetstream: JetStreamTransport,
    *,
    cluster_id: str,
    channel: str,
    first: int,
    last: int,
    copied_up_to: int,
    progress: Progress,
    window: int = DEFAULT_WINDOW,
) -> CopyResult:
    """Read ``channel`` from ``first`` to ``last``; publish what follows ``copied_up_to``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    content = ContentHash()
    slots = asyncio.Semaphore(window)
    pending: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    copied = 0
    total = max(0, last - first + 1)
    progress.start(channel, total)

    def settled(task: asyncio.Task[None]) -> None:
        nonlocal copied
        pending.discard(task)
        slots.release()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            failures.append(error)
        else:
            copied += 1

    read = 0
    records = read_channel(stan, channel, first=first, last=last)
    try:
        async with contextlib.aclosing(records):
            async for record in records:
                read += 1
                content.add(record.sequence, record.data)
                if record.sequence > copied_up_to:
                    if failures:
                        break
                    await slots.acquire()
                    origin = Origin(cluster_id, channel, record.sequence, record.timestamp_ns)
                    # Created in sequence order and started in that order: each writes its
                    # message to the connection before the next one runs.
                    task = loop.create_task(
                        _publish(jetstream, channel, record.data, origin),
                        name=f"copy-{channel}-{record.sequence}",
                    )
                    pending.add(task)
                    task.add_done_callback(settled)
                if read % 64 == 0:
                    progress.advance(channel, read)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for task in pending:
            task.cancel()
    if failures:
        raise CopyFailed(
            f"copying {channel!r} stopped: {failures[0]}. The {copied} message(s) confirmed "
            "are in the stream; run the copy again to go on from there"
        ) from failures[0]
    progress.finish(channel, read)
    return CopyResult(channel, read, copied, content, loop.time() - started)


async def _publish(
    jetstream: JetStreamTransport, subject: str, data: bytes, origin: Origin
) -> None:
    await jetstream.publish(subject, data, origin.headers())
