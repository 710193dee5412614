"""Sending with nats-py from code that does not await.

nats-py's ``Client.publish`` is a coroutine, yet it nearly always finishes on its first
step: it appends the message to the outbound buffer and wakes the flusher. Two ways to
send without a task, the first that applies:

- ``write_publish`` appends the ``PUB`` to nats-py's outbound buffer itself, as
  ``publish`` would when the connection is up and the buffer has room. It runs on every
  acknowledgement of a NATS Streaming delivery, where ``publish`` and the three
  coroutines under it were a sixth of a consume's time (``docs/benchmarks.md``). It
  declines whatever it does not handle the way ``publish`` does (a closed, draining or
  reconnecting connection, a full buffer, a subject nats-py would refuse), leaving it
  to ``publish`` and its errors.
- ``publish_eagerly`` runs ``publish``'s first step in line, and a task carries the rest
  on where nats-py waits (its outbound buffer is over its limit and it waits for the
  flusher). A task per publish cost as much as the rest of the publish.

(An eager task does the second on Python 3.12 and later; this package supports 3.11.)
``write_publish`` reads nats-py's outbound buffer, its flusher's queue and its status,
the same in 2.10 through 2.16 (the dependency matrix runs on both ends); a client
without them is sent to ``publish``.
"""

from __future__ import annotations

import asyncio
import functools
import types
from collections.abc import Coroutine, Generator
from typing import Any

from nats.aio.client import Client

# What write_publish reads of a client; a client lacking any goes through publish.
_OUTBOUND_INTERNALS = (
    "_status",
    "_pending",
    "_pending_data_size",
    "_max_pending_size",
    "_max_payload",
    "_flush_queue",
    "_flusher_task",
    "stats",
)
_OUTBOUND_KNOWN: dict[type[Client], bool] = {}


def write_publish(client: Client, subject: str, payload: bytes, reply: str = "") -> bool:
    """Append ``PUB subject reply`` with ``payload`` to nats-py's outbound buffer and
    wake its flusher, as ``publish`` does; ``False``: not written, use ``publish``."""
    kind = type(client)
    known = _OUTBOUND_KNOWN.get(kind)
    if known is None:
        known = _OUTBOUND_KNOWN[kind] = all(hasattr(client, name) for name in _OUTBOUND_INTERNALS)
    if not known or client._status != Client.CONNECTED:
        return False
    line = _pub_line(subject, reply)
    if line is None:
        return False  # publish raises BadSubjectError (2.10 sends it as it is)
    size = len(payload)
    if size > client._max_payload:
        return False
    command = b"%s%d\r\n%s\r\n" % (line, size, payload)
    pending_size = client._pending_data_size + len(command)
    if client._max_pending_size > 0 and pending_size > client._max_pending_size:
        return False  # publish flushes first, and waits
    flusher = client._flusher_task
    flush_queue = client._flush_queue
    if flush_queue is None or flusher is None or flusher.done():
        return False
    client._pending.append(command)
    client._pending_data_size = pending_size
    stats = client.stats
    stats["out_msgs"] += 1
    stats["out_bytes"] += size
    if flush_queue.empty():
        # The flusher writes everything pending, then resolves the future it was given.
        flush_queue.put_nowait(asyncio.get_running_loop().create_future())
    return True


@functools.lru_cache(maxsize=1024)
def _pub_line(subject: str, reply: str) -> bytes | None:
    """``PUB subject reply `` (the size follows); ``None`` for a subject nats-py 2.16
    refuses (empty, or with whitespace, which would end the line early). Cached: an
    ack inbox or a channel's subject comes back on every message."""
    for name in (subject, reply):
        if " " in name or "\t" in name or "\r" in name or "\n" in name:
            return None
    if not subject:
        return None
    return f"PUB {subject} {reply} ".encode()


def publish_eagerly(
    client: Client, subject: str, payload: bytes, reply: str
) -> asyncio.Task[None] | None:
    """Hand ``payload`` to nats-py now.

    Returns ``None`` once nats-py has taken it, or the task that finishes it where nats-py
    waits. Raises what nats-py raised on its first step (the callers classify it).
    """
    if write_publish(client, subject, payload, reply):
        return None
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
