"""The NATS Streaming side: reading a channel in order, and what the monitor says.

A channel is read through a non-durable subscription that starts at a sequence; the
reader hands over each message once, in sequence order (a redelivery of a message it
handed over already is dropped), and stops at the last sequence it was asked for. The
server's monitoring endpoint (``nats-streaming-server -m PORT``) tells which channels
exist, their sequences, and the durable subscriptions with their positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from common_events.errors import TransportError
from common_events.transports.stan import StanClient, StanMessage, StartPosition
from common_events.transports.stan.monitor import ChannelSummary, MonitorSnapshot

logger = logging.getLogger(__name__)

READ_MAX_IN_FLIGHT = 1024
READ_ACK_WAIT_SECONDS = 60
STALL_TIMEOUT = 30.0
"""Seconds the reader waits for the next message it knows exists before giving up."""
PEEK_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class StanRecord:
    """One stored message of a channel."""

    sequence: int
    data: bytes
    timestamp_ns: int


class ChannelGone(TransportError):
    """The channel stopped delivering messages it still holds (server or limits)."""


async def read_channel(
    client: StanClient,
    channel: str,
    *,
    first: int,
    last: int,
    buffer: int = 4096,
    stall_timeout: float = STALL_TIMEOUT,
) -> AsyncGenerator[StanRecord, None]:
    """The messages of ``channel`` from sequence ``first`` to ``last``, in order.

    A message removed by the channel's limits meanwhile is skipped by the server; the
    reader ends at ``last`` or at the first message past it.
    """
    if last < first:
        return
    queue: asyncio.Queue[StanRecord] = asyncio.Queue(maxsize=buffer)

    async def take(message: StanMessage) -> None:
        # Awaited before the next delivery; the ack follows once this returns, so the
        # bounded queue holds the server back (it sends at most max in flight unacked).
        await queue.put(StanRecord(message.sequence, message.data, message.timestamp_ns))

    subscription = await client.subscribe(
        channel,
        take,
        start_position=StartPosition.SEQUENCE_START,
        start_sequence=first,
        max_in_flight=READ_MAX_IN_FLIGHT,
        ack_wait_seconds=READ_ACK_WAIT_SECONDS,
        manual_acks=False,
    )
    handed = first - 1
    try:
        while handed < last:
            try:
                async with asyncio.timeout(stall_timeout):
                    record = await queue.get()
            except TimeoutError:
                client.check_usable()
                raise ChannelGone(
                    f"channel {channel!r} delivered nothing for {stall_timeout:g}s after "
                    f"sequence {handed} although it holds messages up to {last}"
                ) from None
            if record.sequence <= handed:
                continue  # a redelivery of what was handed over already
            handed = record.sequence
            yield record
    finally:
        with contextlib.suppress(TransportError):
            await subscription.unsubscribe()


async def peek_unacknowledged(
    client: StanClient,
    channel: str,
    *,
    queue_group: str,
    durable_name: str,
    pending: int,
    ack_wait_seconds: int,
    within: float = PEEK_TIMEOUT,
) -> list[int]:
    """The sequences a stopped durable queue group has not acknowledged.

    Joining the group makes the server redeliver its unacknowledged messages to the new
    member at once. Nothing is acknowledged, and closing (not unsubscribing) leaves the
    durable as it was: the messages stay unacknowledged.
    """
    seen: set[int] = set()
    enough = asyncio.Event()

    async def note(message: StanMessage) -> None:
        seen.add(message.sequence)
        if len(seen) >= pending:
            enough.set()

    subscription = await client.subscribe(
        channel,
        note,
        queue_group=queue_group,
        durable_name=durable_name,
        start_position=StartPosition.FIRST,
        # One in flight: the redeliveries come anyway, nothing new is sent to this member.
        max_in_flight=1,
        ack_wait_seconds=ack_wait_seconds,
        manual_acks=True,
    )
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await enough.wait()
    finally:
        await subscription.close()
    return sorted(seen)


def channel_of(snapshot: MonitorSnapshot, name: str) -> ChannelSummary | None:
    for channel in snapshot.channels:
        if channel.name == name:
            return channel
    return None
