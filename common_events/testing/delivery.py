"""``deliver(listener, event)``: one message through a listener, and what became of it.

The message is published on an in-memory broker of its own and handed to the listener
by a real subscription, so the handler gets a real ``MemoryMessage`` (its ack and nak
reach that broker). It then goes through the listener's own delivery path: decoding,
validation, the handler, and the failure policy; the result is the ``Outcome`` that
``Listener.handle_delivery`` returns. Nothing of the listener is replaced, and nothing
is read from logs. Dead-letter records go to the listener's own bus, where a test can
look at them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from common_events.core.codec import DeadLetter, DeadLetterReason, encode_event
from common_events.core.listener import Listener
from common_events.core.policy import (
    Acked,
    DeadLettered,
    NotSettled,
    Outcome,
    OutOfOrderLater,
    RetryLater,
)
from common_events.events.base import Event
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
    result: Outcome
    """What ``Listener.handle_delivery`` returned: the failure policy's outcome."""
    retry_delay: float | None = None
    """Seconds after which the listener asked for it again, if it did."""
    dead_letter: DeadLetter | None = None
    """The record the listener published on the dead-letter subject, if it did."""
    error: BaseException | None = None
    """The exception the handler raised (``OutOfOrder`` included), if any."""

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
        if isinstance(self.result, NotSettled):
            details.append(f"not settled: {self.result.error!r}")
        return "; ".join(details)


async def deliver(
    listener: Listener[Any],
    message: Event | bytes | str | Mapping[str, Any],
    *,
    delivery_count: int = 1,
    sequence: int | None = None,
    headers: Mapping[str, str] | None = None,
    handler_timeout: float = DEFAULT_TIMEOUT,
) -> Delivery:
    """Run ``listener`` on one message and report whether it was acked, not acked or
    dead-lettered.

    ``message`` is an event of the listener's type, or the raw payload (bytes, text or a
    JSON object) to test bad input. ``delivery_count`` makes it the Nth delivery, to
    test what happens at ``max_deliveries``. ``sequence`` (default 1) and ``headers``
    (such as a ``Nats-Msg-Id``) make deliveries of different messages tell apart, as an
    idempotent listener keys them. ``handler_timeout`` bounds the wait for the
    handler (a ``TimeoutError`` names the listener). A dead-letter record goes to the
    listener's bus (the ``event_bus`` fixture, where ``published.dead_letters()`` reads
    it); the listener need not be listening.
    """
    if delivery_count < 1:
        raise ValueError("delivery_count starts at 1 (the first delivery)")
    data = _payload(listener, message)
    subject = listener.subject.value
    source = MemoryTransport(url="memory://deliver")
    handled: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    async def handle(raw: TransportMessage) -> None:
        if handled.done():
            return  # a redelivery after a nak; the test is about the first delivery only
        outcome = await listener.handle_delivery(_NthDelivery(raw, delivery_count, sequence))
        if not handled.done():
            handled.set_result(outcome)

    try:
        await source.publish(subject, data, headers)
        # A long ack wait: a redelivery by this private broker is not part of the test.
        await source.subscribe(subject, handle, SubscriptionOptions(ack_wait=3600.0))
        try:
            outcome = await asyncio.wait_for(handled, handler_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{type(listener).__name__}.on_message did not return within {handler_timeout:g}s"
            ) from None
    finally:
        await source.close()
    return _delivery_of(outcome, data)


def _delivery_of(result: Outcome, data: bytes) -> Delivery:
    error = _handler_error(result)
    if isinstance(result, Acked):
        return Delivery(DeliveryOutcome.ACKED, data, result, error=error)
    if isinstance(result, DeadLettered):
        return Delivery(
            DeliveryOutcome.DEAD_LETTERED, data, result, dead_letter=result.record, error=error
        )
    retry_delay = result.delay if isinstance(result, RetryLater | OutOfOrderLater) else None
    return Delivery(DeliveryOutcome.NOT_ACKED, data, result, retry_delay=retry_delay, error=error)


def _handler_error(result: Outcome | None) -> Exception | None:
    """What the handler raised, if the outcome says it ran and raised."""
    if isinstance(result, Acked | RetryLater | OutOfOrderLater):
        return result.error
    if isinstance(result, DeadLettered) and result.record.reason is DeadLetterReason.MAX_DELIVERIES:
        return result.error
    if isinstance(result, NotSettled):
        return _handler_error(result.intended)
    return None


def _payload(listener: Listener[Any], message: Event | bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(message, Event):
        if not isinstance(message, listener.event_type):
            raise TypeError(
                f"{type(listener).__name__} listens to {listener.event_type.__name__} on "
                f"{listener.subject.value!r}, not {type(message).__name__}"
            )
        return encode_event(message)
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode("utf-8")
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


class _NthDelivery:
    """A real delivery that reports ``delivery_count`` (and ``sequence``, if given) as
    asked, so a test can play the Nth delivery without failing N-1 times first;
    everything else is the real one's."""

    def __init__(
        self, raw: TransportMessage, delivery_count: int, sequence: int | None = None
    ) -> None:
        self._raw = raw
        self.delivery_count = delivery_count
        self.redelivered = delivery_count > 1
        self.sequence = raw.sequence if sequence is None else sequence

    def __getattr__(self, name: str) -> Any:
        # Only what the attributes above leave out reaches here: the subject, data,
        # timestamp, headers, ack(), nak() and in_progress() of the real delivery.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._raw, name)
