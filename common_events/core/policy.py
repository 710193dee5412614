"""The failure policy of DESIGN.md as data: a delivery goes in, an outcome comes out.

Nothing here does I/O or keeps state. ``Listener`` asks the policy at two points (when a
message arrives, and after its handler ran) and then carries the outcome out: an ack,
a negative ack with a delay, or a dead-letter record published and then acknowledged.
When the dead-letter publish fails, the policy says how long the message waits before it
comes back (``on_dead_letter_failed``): it is never acknowledged unpublished.
Tests, the demo and middlewares read the same outcome, never the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common_events.core.codec import (
    DeadLetter,
    DeadLetterMessage,
    DeadLetterReason,
    EventDecodeError,
    dead_letter_subject,
)
from common_events.errors import OutOfOrder


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """What the policy needs to know of one delivery."""

    subject: str
    sequence: int
    """The broker's sequence of the stored message (the same on every redelivery)."""
    delivery_count: int
    """1 on the first delivery, 2 on the first redelivery, and so on."""
    data: bytes


@dataclass(frozen=True, slots=True)
class HandlerResult:
    """How ``on_message`` ended: whether it acknowledged, and what it raised, if anything."""

    acked: bool
    error: Exception | None = None


class Outcome:
    """What became of one delivery; one of the frozen dataclasses below."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Acked(Outcome):
    """The handler acknowledged the message: the broker will not deliver it again.

    ``error`` is what the handler raised after acknowledging, if anything; the work was
    done, so it is not retried.
    """

    error: Exception | None = None


ACKED = Acked()
"""The outcome of a delivery whose handler acknowledged and returned: one object for
all of them (outcomes are immutable)."""


@dataclass(frozen=True, slots=True)
class NotAcked(Outcome):
    """The handler returned without acknowledging: the message comes back after
    ``ack_wait``, and past ``max_deliveries`` it is dead-lettered on arrival."""


@dataclass(frozen=True, slots=True)
class RetryLater(Outcome):
    """The handler raised ``error``: redelivery was asked for after ``delay`` seconds
    (where the broker has no negative ack, it comes back after ``ack_wait``)."""

    delay: float
    error: Exception


@dataclass(frozen=True, slots=True)
class OutOfOrderLater(Outcome):
    """The handler raised ``OutOfOrder``: the event cannot be applied yet, and
    redelivery was asked for after ``delay`` seconds."""

    delay: float
    error: OutOfOrder


@dataclass(frozen=True, slots=True)
class DeadLettered(Outcome):
    """``record`` was published on ``subject`` (``dead-letter:<subject>``) and the
    message acknowledged. ``error`` is the exception behind it, if there was one: the
    ``EventDecodeError`` of an invalid payload, or what the handler raised on the last
    allowed delivery.

    ``record`` is the whole record, the original payload included. ``published`` is
    the message as it went out, in the form that fit the server's maximum payload
    (inline, original with the record in headers, or truncated); ``None`` on the
    policy's decision, before the listener published it.
    """

    subject: str
    record: DeadLetter
    error: Exception | None = None
    published: DeadLetterMessage | None = None


@dataclass(frozen=True, slots=True)
class LeftForRedelivery(Outcome):
    """The listener is pausing or closing: the message was left unacknowledged, for
    another member of the queue group or the service's next start."""


@dataclass(frozen=True, slots=True)
class NotSettled(Outcome):
    """Carrying out ``intended`` failed with ``error`` (the broker refused an ack, a
    negative ack or the dead-letter publish). The message was not acknowledged: it comes
    back after ``ack_wait``, or after ``redelivery_delay`` seconds where it was handed
    back with a delay (a failed dead-letter publish, on a broker with a negative ack).
    ``intended`` is ``None`` when the listener failed before it had decided."""

    intended: Outcome | None
    error: Exception
    redelivery_delay: float | None = None


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """One listener's limits, and the decisions they lead to."""

    queue_group: str | None
    max_deliveries: int
    """A message whose handler failed on this many deliveries is dead-lettered."""
    retry_delay: float
    """Seconds before the first retry; doubles with each delivery, capped at ``ack_wait``."""
    ack_wait: float
    dead_letter_retry_delay: float = 30.0
    """Seconds before a message whose dead-letter publish failed comes back to try
    again, where the broker has a negative ack (memory, JetStream); NATS Streaming
    redelivers it after ``ack_wait``. Long, so that a dead-letter subject that refuses
    everything (a permission, a stream that does not store it) costs little meanwhile."""

    def retry_delay_after(self, delivery_count: int) -> float:
        """Seconds to wait before delivery ``delivery_count + 1`` after a failure."""
        return float(min(self.ack_wait, self.retry_delay * 2 ** max(delivery_count - 1, 0)))

    def decides_on_arrival(self, delivery_count: int, *, paused: bool) -> bool:
        """Whether ``on_arrival`` settles a delivery before its handler runs (it answers
        ``None`` exactly when this is ``False``): a listener asks it first, and builds
        what ``on_arrival`` needs only for the few deliveries it settles."""
        return paused or delivery_count > self.max_deliveries

    def on_arrival(
        self, attempt: DeliveryAttempt, *, paused: bool, now: datetime
    ) -> Outcome | None:
        """What becomes of a message before it is decoded; ``None``: decode it and run
        the handler."""
        if paused:
            return LeftForRedelivery()
        if attempt.delivery_count > self.max_deliveries:
            return self._dead_letter(
                attempt,
                DeadLetterReason.MAX_DELIVERIES,
                f"delivered {attempt.delivery_count} times, more than "
                f"max_deliveries={self.max_deliveries}",
                now=now,
            )
        return None

    def on_undecodable(
        self, attempt: DeliveryAttempt, error: EventDecodeError, *, now: datetime
    ) -> DeadLettered:
        """A payload that is not a valid event never reaches the handler."""
        return self._dead_letter(attempt, error.reason, error.detail, now=now, cause=error)

    def on_handled(
        self, attempt: DeliveryAttempt, result: HandlerResult, *, now: datetime
    ) -> Outcome:
        """What becomes of a message once its handler returned or raised."""
        error = result.error
        if result.acked:
            return ACKED if error is None else Acked(error)
        if error is None:
            return NotAcked()
        if attempt.delivery_count >= self.max_deliveries:
            return self._dead_letter(
                attempt,
                DeadLetterReason.MAX_DELIVERIES,
                f"{type(error).__name__}: {error} (on delivery {attempt.delivery_count} of "
                f"max_deliveries={self.max_deliveries})",
                now=now,
                cause=error,
            )
        delay = self.retry_delay_after(attempt.delivery_count)
        if isinstance(error, OutOfOrder):
            return OutOfOrderLater(delay, error)
        return RetryLater(delay, error)

    def on_dead_letter_failed(self, outcome: DeadLettered, error: Exception) -> NotSettled:
        """The dead-letter publish of ``outcome`` failed with ``error``: the message is not
        acknowledged (it would be lost) but handed back for ``dead_letter_retry_delay``
        seconds; on its next delivery it is dead-lettered again."""
        return NotSettled(outcome, error, redelivery_delay=self.dead_letter_retry_delay)

    def _dead_letter(
        self,
        attempt: DeliveryAttempt,
        reason: DeadLetterReason,
        error: str,
        *,
        now: datetime,
        cause: Exception | None = None,
    ) -> DeadLettered:
        record = DeadLetter.of(
            subject=attempt.subject,
            queue_group=self.queue_group,
            reason=reason,
            error=error,
            delivery_count=attempt.delivery_count,
            sequence=attempt.sequence,
            data=attempt.data,
            failed_at=now,
        )
        return DeadLettered(dead_letter_subject(attempt.subject), record, cause)
