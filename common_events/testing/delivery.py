"""``deliver(listener, event)``: one message through a listener, and what became of it.

The message is published on an in-memory broker of its own and handed to the listener
by a real subscription, so the handler gets a real ``MemoryMessage`` (its ack and nak
reach that broker). It then goes through the listener's own delivery path: decoding,
validation, the handler, and the ack / retry / dead-letter policy. Nothing of the
listener is replaced. Dead-letter records go to the listener's own bus, where a test
can look at them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from common_events.core.dead_letter import DeadLetter, dead_letter_subject
from common_events.core.listener import Listener
from common_events.events.base import Event
from common_events.testing.capture import memory_broker
from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.memory import MemoryTransport

DEFAULT_TIMEOUT = 10.0
"""Seconds ``deliver`` waits for the handler to return."""


class DeliveryOutcome(StrEnum):
    ACKED = "acked"
    """The handler acknowledged the message."""
    NOT_ACKED = "not acked"
    """Nobody acknowledged it: it would be delivered again (after a retry delay, or
    after ``ack_wait``)."""
    DEAD_LETTERED = "dead-lettered"
    """The listener sent it to the dead-letter subject (invalid, or past
    ``max_deliveries``) and acknowledged it."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one delivered message."""

    outcome: DeliveryOutcome
    data: bytes
    """The payload as delivered."""
    retry_delay: float | None = None
    """Seconds after which the listener asked for it again, if it did."""
    dead_letter: DeadLetter | None = None
    """The record the listener published on the dead-letter subject, if it did."""
    error: BaseException | None = None
    """The exception the handler raised (``OutOfOrder`` included), if any."""
    log: tuple[str, ...] = field(default=())
    """What the listener logged while handling it."""

    @property
    def acked(self) -> bool:
        """The handler acknowledged it (a dead-lettered message is not counted)."""
        return self.outcome is DeliveryOutcome.ACKED

    @property
    def not_acked(self) -> bool:
        return self.outcome is DeliveryOutcome.NOT_ACKED

    @property
    def dead_lettered(self) -> bool:
        return self.outcome is DeliveryOutcome.DEAD_LETTERED

    def __str__(self) -> str:
        details = [self.outcome.value]
        if self.error is not None:
            details.append(f"handler raised {self.error!r}")
        if self.retry_delay is not None:
            details.append(f"retry asked in {self.retry_delay:g}s")
        if self.dead_letter is not None:
            details.append(
                f"dead letter: {self.dead_letter.reason.value}: {self.dead_letter.error}"
            )
        return "; ".join(details)


async def deliver(
    listener: Listener[Any],
    message: Event | bytes | str | Mapping[str, Any],
    *,
    delivery_count: int = 1,
    handler_timeout: float = DEFAULT_TIMEOUT,
) -> Delivery:
    """Run ``listener`` on one message and report whether it was acked, not acked or
    dead-lettered.

    ``message`` is an event of the listener's type, or the raw payload (bytes, text or a
    JSON object) to test bad input. ``delivery_count`` makes it the Nth delivery, to
    test what happens at ``max_deliveries``. ``handler_timeout`` bounds the wait for the
    handler (a ``TimeoutError`` names the listener). The listener's bus must be in-memory (the
    ``event_bus`` fixture); the listener need not be listening.
    """
    if delivery_count < 1:
        raise ValueError("delivery_count starts at 1 (the first delivery)")
    data = _payload(listener, message)
    subject = listener.subject.value
    dead_letters = memory_broker(listener.bus)
    dead_letter_channel = dead_letter_subject(subject)
    dead_before = len(dead_letters.messages(dead_letter_channel))

    source = MemoryTransport(url="memory://deliver")
    handled: asyncio.Future[_RecordingMessage] = asyncio.get_running_loop().create_future()

    async def handle(raw: TransportMessage) -> None:
        if handled.done():
            return  # a redelivery after a nak; the test is about the first delivery only
        recording = _RecordingMessage(raw, delivery_count)
        try:
            await listener.handle_delivery(recording)
        finally:
            if not handled.done():
                handled.set_result(recording)

    records = _LogRecords()
    logger = listener.log
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        await source.publish(subject, data)
        # A long ack wait: a redelivery by this private broker is not part of the test.
        await source.subscribe(subject, handle, SubscriptionOptions(ack_wait=3600.0))
        try:
            recording = await asyncio.wait_for(handled, handler_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{type(listener).__name__}.on_message did not return within {handler_timeout:g}s"
            ) from None
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
        await source.close()

    new_dead = dead_letters.messages(dead_letter_channel)[dead_before:]
    dead_letter = DeadLetter.model_validate_json(new_dead[-1].data) if new_dead else None
    if dead_letter is not None:
        outcome = DeliveryOutcome.DEAD_LETTERED
    elif recording.acked:
        outcome = DeliveryOutcome.ACKED
    else:
        outcome = DeliveryOutcome.NOT_ACKED
    return Delivery(
        outcome=outcome,
        data=data,
        retry_delay=recording.nak_delay,
        dead_letter=dead_letter,
        error=records.error,
        log=tuple(records.messages),
    )


def _payload(listener: Listener[Any], message: Event | bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(message, Event):
        if not isinstance(message, listener.event_type):
            raise TypeError(
                f"{type(listener).__name__} listens to {listener.event_type.__name__} on "
                f"{listener.subject.value!r}, not {type(message).__name__}"
            )
        return message.model_dump_json().encode("utf-8")
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode("utf-8")
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


class _RecordingMessage:
    """A real delivery that remembers whether it was acked or nak'ed.

    It reports ``delivery_count`` as asked, so a test can play the Nth delivery without
    failing N-1 times first; everything else is the real message's.
    """

    def __init__(self, raw: TransportMessage, delivery_count: int) -> None:
        self._raw = raw
        self._delivery_count = delivery_count
        self.acked = False
        self.nak_delay: float | None = None

    @property
    def subject(self) -> str:
        return self._raw.subject

    @property
    def data(self) -> bytes:
        return self._raw.data

    @property
    def sequence(self) -> int:
        return self._raw.sequence

    @property
    def redelivered(self) -> bool:
        return self._delivery_count > 1

    @property
    def delivery_count(self) -> int:
        return self._delivery_count

    @property
    def timestamp(self) -> datetime:
        return self._raw.timestamp

    @property
    def headers(self) -> Mapping[str, str]:
        return self._raw.headers

    async def ack(self) -> None:
        await self._raw.ack()
        self.acked = True

    async def nak(self, delay: float | None = None) -> None:
        await self._raw.nak(delay)
        self.nak_delay = delay if delay is not None else 0.0


class _LogRecords(logging.Handler):
    """Keeps what the listener logs during one delivery, and the handler's exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.getMessage()}")
        if record.exc_info and record.exc_info[1] is not None:
            self.error = record.exc_info[1]
            return
        # OutOfOrder is logged at info level without a traceback; it is an argument.
        arguments = record.args if isinstance(record.args, tuple) else ()
        for argument in arguments:
            if isinstance(argument, BaseException):
                self.error = argument
