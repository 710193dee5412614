"""The JetStream side: what the stream holds of each channel, and the consumers.

Everything the copy tools know about what was copied already they read from the stream
itself: the copies carry their STAN sequence in a header, so the last one of a subject
says where a new run goes on, whatever the stream's duplicate window. Scanning a subject
reads it through an ordered consumer (flow-controlled, removed by the server once done).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from nats.js import api

from common_events.errors import TransportError
from common_events.migration.origin import origin_sequence
from common_events.transports.jetstream import ConsumerPlan, JetStreamTransport
from common_events.transports.nats_connection import (
    JetStreamApiError,
    Operation,
    map_nats_errors,
)

logger = logging.getLogger(__name__)

SCAN_TIMEOUT = 30.0
"""Seconds a scan waits for the next message it knows the stream holds."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    stream_sequence: int
    origin: int | None
    """The STAN sequence it was copied from; ``None`` if published on JetStream."""
    data: bytes
    headers: Mapping[str, str]


class EventStream:
    """The stream of a JetStream transport, read and administered for the copy tools."""

    def __init__(self, transport: JetStreamTransport) -> None:
        self.transport = transport
        self.name = transport.stream
        client = transport.client
        timeout = transport.options.request_timeout
        self._js = client.jetstream(timeout=timeout)
        self._jsm = client.jsm(timeout=timeout)

    async def _call(self, call: Any, what: str) -> Any:
        with map_nats_errors(Operation.REQUEST, what):
            return await call

    async def subject_count(self, subject: str) -> int:
        info = await self._call(
            self._jsm.stream_info(self.name, subjects_filter=subject),
            f"reading stream {self.name}",
        )
        subjects = info.state.subjects or {}
        return int(subjects.get(subject, 0))

    async def last_sequence(self) -> int:
        info = await self._call(self._jsm.stream_info(self.name), f"reading stream {self.name}")
        return int(info.state.last_seq)

    async def last_message(self, subject: str) -> StoredMessage | None:
        """The newest message of ``subject``, or ``None`` if it has none."""
        try:
            raw = await self._call(
                self._jsm.get_last_msg(self.name, subject), f"reading the last {subject!r}"
            )
        except JetStreamApiError as error:
            if error.not_found:
                return None
            raise
        return _stored(raw)

    async def message_at_or_after(self, subject: str, sequence: int) -> StoredMessage | None:
        """The first message of ``subject`` at stream sequence ``sequence`` or later."""
        try:
            raw = await self._call(
                self._jsm.get_msg(self.name, seq=max(1, sequence), subject=subject, next=True),
                f"reading {subject!r} from #{sequence}",
            )
        except JetStreamApiError as error:
            if error.not_found:
                return None
            raise
        return _stored(raw)

    async def scan(self, subject: str, *, start: int = 1) -> AsyncIterator[StoredMessage]:
        """Every message of ``subject`` from stream sequence ``start`` on, in order, up to
        the last one stored when the scan reaches it."""
        if await self.message_at_or_after(subject, start) is None:
            return
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start),
        )
        with map_nats_errors(Operation.SUBSCRIBE, f"reading {subject!r} from the stream"):
            subscription = await self._js.subscribe(
                subject, stream=self.name, ordered_consumer=True, config=config
            )
        try:
            while True:
                with map_nats_errors(Operation.SUBSCRIBE, f"reading {subject!r}"):
                    msg = await subscription.next_msg(timeout=SCAN_TIMEOUT)
                metadata = msg.metadata
                headers = msg.headers or {}
                yield StoredMessage(
                    stream_sequence=int(metadata.sequence.stream),
                    origin=origin_sequence(headers),
                    data=msg.data,
                    headers=headers,
                )
                if metadata.num_pending == 0:
                    return
        finally:
            with (
                contextlib.suppress(TransportError),
                map_nats_errors(Operation.CLOSE, f"ending the read of {subject!r}"),
            ):
                await subscription.unsubscribe()

    # -- consumers -----------------------------------------------------------------------

    async def consumer_start(self, name: str) -> int | None:
        """The start sequence an existing consumer was made with (0 for another deliver
        policy), or ``None`` if there is no such consumer."""
        try:
            info = await self._call(
                self._jsm.consumer_info(self.name, name), f"reading consumer {name}"
            )
        except JetStreamApiError as error:
            if error.not_found:
                return None
            raise
        return int(info.config.opt_start_seq or 0)

    async def create_consumer(
        self, plan: ConsumerPlan, *, start_sequence: int, durable: bool = True
    ) -> None:
        """Create the consumer of ``plan``, delivering from stream sequence
        ``start_sequence`` on (messages of its subject only)."""
        config = api.ConsumerConfig(
            name=plan.name,
            durable_name=plan.name if durable else None,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start_sequence),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=plan.ack_wait,
            max_deliver=plan.max_deliver if plan.max_deliver is not None else -1,
            max_ack_pending=plan.max_ack_pending,
            filter_subject=plan.filter_subject,
            deliver_subject=plan.deliver_subject,
            deliver_group=plan.deliver_group,
        )
        await self._call(
            self._jsm.add_consumer(self.name, config), f"creating consumer {plan.name}"
        )


def _stored(raw: Any) -> StoredMessage:
    headers: Mapping[str, str] = raw.headers or {}
    return StoredMessage(
        stream_sequence=int(raw.seq),
        origin=origin_sequence(headers),
        data=raw.data or b"",
        headers=headers,
    )
