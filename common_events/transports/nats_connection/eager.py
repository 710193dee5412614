"""Sending with nats-py from code that does not await: its first step run at once.

nats-py's ``Client.publish`` is a coroutine, yet it nearly always finishes on its first
step: it appends the message to the outbound buffer and wakes the flusher. Running that
step in line lets a publish start without a task, which is what makes
``Publisher.publish`` return a plain future (a task per publish cost as much as the rest
of the publish). When nats-py does wait (its outbound buffer is over its limit and it
waits for the flusher), a task carries the rest of the coroutine on.

(An eager task does this on Python 3.12 and later; this package supports 3.11.)
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

from nats.aio.client import Client


def publish_eagerly(
    client: Client, subject: str, payload: bytes, reply: str
) -> asyncio.Task[None] | None:
    """Hand ``payload`` to nats-py now.

    Returns ``None`` once nats-py has taken it, or the task that finishes it where nats-py
    waits. Raises what nats-py raised on its first step (the callers classify it).
    """
    coroutine = client.publish(subject, payload, reply=reply)
    try:
        awaited = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_resumed(coroutine, awaited))


@types.coroutine
def _resumed(coroutine: Coroutine[Any, Any, None], awaited: Any) -> Generator[Any, None, None]:
    # Wait on what the coroutine waits on, as the task running it would, then resume it
    # (a task resumes a coroutine with send(None) once the future it waits on is done).
    yield awaited
    yield from coroutine
