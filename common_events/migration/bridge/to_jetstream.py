"""STAN to JetStream: one channel forwarded to the stream, for a subject whose publishers
still speak NATS Streaming (the package's docstring says what it guarantees)."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from common_events.errors import TransportError
from common_events.migration.bridge.channel import Channel
from common_events.migration.jetstream_stream import EventStream
from common_events.migration.ledger import SubjectLedger
from common_events.migration.origin import Origin
from common_events.transports import stan as stan_transport
from common_events.transports.stan import StanMessage, StanSubscription

if TYPE_CHECKING:
    from common_events.migration.bridge.runner import Bridge

logger = logging.getLogger(__name__)


class ForwardChannel(Channel):
    """One channel forwarded to the stream."""

    direction = "to_jetstream"

    def __init__(self, bridge: Bridge, subject: str) -> None:
        super().__init__(bridge, subject)
        self.last_copied = 0
        self._subscription: StanSubscription | None = None

    async def start(self) -> None:
        bridge = self.bridge
        assert bridge.stan is not None and bridge._stream is not None
        self.last_copied = await last_copied(bridge._stream, self.subject)
        self._resumes_after(self.last_copied)
        self._subscription = await bridge.stan.client.subscribe(
            self.subject,
            self._on_message,
            durable_name=bridge.options.durable_name,
            # Only for a new durable: an existing one resumes where it stopped.
            start_position=stan_transport.StartPosition.SEQUENCE_START,
            start_sequence=self.last_copied + 1,
            max_in_flight=1,
            ack_wait_seconds=max(1, round(bridge.options.ack_wait)),
            manual_acks=True,
        )
        logger.info(
            "forwarding %s to JetStream after STAN #%d (the stream's last copy)",
            self.subject,
            self.last_copied,
        )

    async def _on_message(self, message: StanMessage) -> None:
        if self.stopping:
            return  # unacknowledged: it comes back to the next start
        self.idle.clear()
        try:
            await self._forward(message)
        finally:
            self.idle.set()

    async def _forward(self, message: StanMessage) -> None:
        bridge = self.bridge
        assert bridge.jetstream is not None
        if message.sequence <= self.last_copied:
            self._already_there(message.sequence)
            await self._ack_stan(message)
            return
        origin = Origin(
            bridge.options.cluster_id, self.subject, message.sequence, message.timestamp_ns
        )
        while True:
            try:
                await bridge.jetstream.publish(self.subject, message.data, origin.headers())
                break
            except TransportError as error:
                self._failed("publish")
                logger.warning(
                    "forwarding %s #%d to JetStream: %s; trying again",
                    self.subject,
                    message.sequence,
                    error,
                )
                if not await self._wait_retry():
                    return
        self.last_copied = message.sequence
        self._forwarded(message.sequence, message.timestamp_ns / 1e9)
        await self._ack_stan(message)

    async def _ack_stan(self, message: StanMessage) -> None:
        try:
            await message.ack()
        except TransportError as error:
            # It comes back after ack wait, and is then found copied already.
            self._failed("ack")
            logger.warning(
                "acknowledging %s #%d on STAN: %s", message.subject, message.sequence, error
            )

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(TransportError):
                await subscription.close()


async def last_copied(stream: EventStream, subject: str) -> int:
    """The STAN sequence of the last copy of ``subject`` in the stream (0 if none)."""
    last = await stream.last_message(subject)
    if last is None:
        return 0
    if last.origin is not None:
        return last.origin
    # Messages published on JetStream came after the copies: find the last copy.
    ledger = SubjectLedger(subject, first=1)
    async for message in stream.scan(subject):
        ledger.add(message)
    return ledger.last_origin
