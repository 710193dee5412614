"""Publishing many payloads with a bounded number of workers.

The fallback ``publish_many`` of transports whose client has no cheaper pipelined path:
a fixed number of workers rather than a task per payload, because tens of thousands of
suspended tasks cost more than the broker round trips they overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from common_events.transports.base import PublishAck

PublishOne = Callable[[str, bytes], Awaitable[PublishAck]]


async def publish_with_workers(
    publish: PublishOne, subject: str, payloads: Sequence[bytes], workers: int
) -> list[PublishAck | Exception]:
    """Publish every payload; one result per payload, in order: its ack or its error."""
    results: list[PublishAck | Exception | None] = [None] * len(payloads)
    positions = iter(range(len(payloads)))

    async def worker() -> None:
        for position in positions:
            try:
                results[position] = await publish(subject, payloads[position])
            except Exception as error:
                results[position] = error

    await asyncio.gather(*(worker() for _ in range(max(1, min(workers, len(payloads))))))
    return [result for result in results if result is not None]
