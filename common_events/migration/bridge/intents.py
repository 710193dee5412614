"""The reverse direction's ledger: before each publish to a channel, which stream message
is being sent, its SHA-256 and the channel's last sequence before it, kept in a stream
that holds one message per subject."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from nats.js import api

from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.nats_connection import (
    JetStreamApiError,
    Operation,
    map_nats_errors,
)

logger = logging.getLogger(__name__)

LEDGER_STREAM = "COMMON_EVENTS_BRIDGE"
LEDGER_PREFIX = "common-events-bridge"


@dataclass(frozen=True, slots=True)
class Intent:
    stream_sequence: int
    sha256: str
    floor: int
    """The channel's last sequence before the publish: the copy, if stored, is later."""


class Ledger:
    """The last intent per subject, in a stream that keeps one message per subject."""

    def __init__(self, transport: JetStreamTransport) -> None:
        self._js = transport.client.jetstream(timeout=transport.options.request_timeout)
        self._jsm = transport.client.jsm(timeout=transport.options.request_timeout)

    @classmethod
    async def open(cls, transport: JetStreamTransport) -> Ledger:
        ledger = cls(transport)
        config = api.StreamConfig(
            name=LEDGER_STREAM,
            subjects=[f"{LEDGER_PREFIX}.>"],
            storage=api.StorageType.FILE,
            max_msgs_per_subject=1,
        )
        with map_nats_errors(Operation.REQUEST, f"creating stream {LEDGER_STREAM}"):
            await ledger._jsm.add_stream(config)
        return ledger

    @staticmethod
    def _subject(subject: str) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in subject)
        return f"{LEDGER_PREFIX}.to-stan.{safe}"

    async def read(self, subject: str) -> Intent | None:
        try:
            with map_nats_errors(Operation.REQUEST, "reading the bridge's ledger"):
                raw = await self._jsm.get_last_msg(LEDGER_STREAM, self._subject(subject))
        except JetStreamApiError as error:
            if error.not_found:
                return None
            raise
        document = json.loads(raw.data or b"{}")
        return Intent(int(document["seq"]), str(document["sha256"]), int(document["floor"]))

    async def write(self, subject: str, intent: Intent) -> None:
        document = {"seq": intent.stream_sequence, "sha256": intent.sha256, "floor": intent.floor}
        with map_nats_errors(Operation.PUBLISH, "writing the bridge's ledger"):
            await self._js.publish(self._subject(subject), json.dumps(document).encode())
