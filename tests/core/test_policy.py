"""The failure policy as data: a delivery and how its handler ended in, an outcome out."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from common_events import (
    DeadLetterReason,
    OutOfOrder,
    TicketUpdatedEvent,
)
from common_events.core import (
    Acked,
    DeadLettered,
    DeliveryAttempt,
    EventDecodeError,
    FailurePolicy,
    HandlerResult,
    LeftForRedelivery,
    NotAcked,
    NotSettled,
    Outcome,
    OutOfOrderLater,
    RetryLater,
    decode_event,
)

NOW = datetime(2026, 11, 27, 6, 40, tzinfo=UTC)
POLICY = FailurePolicy(
    queue_group="orders-service", max_deliveries=3, retry_delay=0.5, ack_wait=5.0
)
PAYLOAD = TicketUpdatedEvent(id="t1", version=2, title="x", price=1, user_id="u").model_dump_json()


def attempt(delivery_count: int, data: bytes = PAYLOAD.encode()) -> DeliveryAttempt:
    return DeliveryAttempt("ticket:updated", sequence=7, delivery_count=delivery_count, data=data)


def test_a_delivery_within_max_deliveries_goes_to_the_handler() -> None:
    assert POLICY.on_arrival(attempt(3), paused=False, now=NOW) is None


def test_a_paused_listener_leaves_the_message_for_redelivery() -> None:
    assert POLICY.on_arrival(attempt(1), paused=True, now=NOW) == LeftForRedelivery()


def test_a_delivery_past_max_deliveries_is_dead_lettered_without_the_handler() -> None:
    outcome = POLICY.on_arrival(attempt(4), paused=False, now=NOW)

    assert isinstance(outcome, DeadLettered)
    assert outcome.subject == "dead-letter:ticket:updated"
    assert outcome.error is None
    record = outcome.record
    assert record.reason is DeadLetterReason.MAX_DELIVERIES
    assert record.error == "delivered 4 times, more than max_deliveries=3"
    assert (record.subject, record.queue_group) == ("ticket:updated", "orders-service")
    assert (record.delivery_count, record.sequence) == (4, 7)
    assert record.original_payload() == PAYLOAD.encode()
    assert record.failed_at == NOW


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", DeadLetterReason.INVALID_JSON),
        (b'{"id":"t1","version":"2"}', DeadLetterReason.INVALID_EVENT),
    ],
)
def test_an_undecodable_payload_is_dead_lettered_with_its_reason(
    data: bytes, reason: DeadLetterReason
) -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_event(TicketUpdatedEvent, data)

    outcome = POLICY.on_undecodable(attempt(1, data), caught.value, now=NOW)

    assert outcome.record.reason is reason
    assert outcome.error is caught.value
    assert outcome.record.error == caught.value.detail
    assert outcome.record.original_payload() == data


def test_a_handler_that_acked_is_acked() -> None:
    assert POLICY.on_handled(attempt(1), HandlerResult(acked=True), now=NOW) == Acked()


def test_an_ack_before_an_error_counts_and_keeps_the_error() -> None:
    error = RuntimeError("after the ack")

    outcome = POLICY.on_handled(attempt(3), HandlerResult(acked=True, error=error), now=NOW)

    assert outcome == Acked(error)


def test_a_handler_that_returned_without_acking_is_not_acked_even_on_the_last_delivery() -> None:
    # It comes back after ack_wait and is dead-lettered on arrival past max_deliveries.
    assert POLICY.on_handled(attempt(3), HandlerResult(acked=False), now=NOW) == NotAcked()


def test_a_handler_error_is_retried_with_a_delay_that_doubles() -> None:
    error = ConnectionError("database unavailable")

    outcomes = [
        POLICY.on_handled(attempt(count), HandlerResult(acked=False, error=error), now=NOW)
        for count in (1, 2)
    ]

    assert outcomes == [RetryLater(0.5, error), RetryLater(1.0, error)]


def test_out_of_order_is_its_own_outcome() -> None:
    error = OutOfOrder("needs version 1")

    outcome = POLICY.on_handled(attempt(1), HandlerResult(acked=False, error=error), now=NOW)

    assert outcome == OutOfOrderLater(0.5, error)


@pytest.mark.parametrize(
    "error", [RuntimeError("the database is down"), OutOfOrder("v1 never came")]
)
def test_a_failure_on_the_last_allowed_delivery_is_dead_lettered_with_the_error(
    error: Exception,
) -> None:
    outcome = POLICY.on_handled(attempt(3), HandlerResult(acked=False, error=error), now=NOW)

    assert isinstance(outcome, DeadLettered)
    assert outcome.error is error
    assert outcome.record.reason is DeadLetterReason.MAX_DELIVERIES
    assert outcome.record.error == (
        f"{type(error).__name__}: {error} (on delivery 3 of max_deliveries=3)"
    )


def test_the_retry_delay_is_capped_at_ack_wait() -> None:
    assert [POLICY.retry_delay_after(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 5.0]


def test_outcomes_are_frozen_values() -> None:
    outcome: Outcome = RetryLater(0.5, RuntimeError("x"))
    with pytest.raises(AttributeError):
        outcome.delay = 1.0  # type: ignore[misc]
    assert isinstance(outcome, Outcome)
    assert Acked() == Acked() and hash(NotAcked()) == hash(NotAcked())


def test_a_dead_letter_record_knows_the_size_and_sha256_of_the_original() -> None:
    outcome = POLICY.on_arrival(attempt(4), paused=False, now=NOW)

    assert isinstance(outcome, DeadLettered)
    assert outcome.record.payload_size == len(PAYLOAD.encode())
    assert outcome.record.describes(PAYLOAD.encode())
    assert outcome.published is None, "the listener says what it published"


def test_a_failed_dead_letter_publish_hands_the_message_back_for_a_long_while() -> None:
    outcome = POLICY.on_arrival(attempt(4), paused=False, now=NOW)
    assert isinstance(outcome, DeadLettered)
    error = PermissionError("may not publish on dead-letter:ticket:updated")

    not_settled = POLICY.on_dead_letter_failed(outcome, error)

    assert not_settled == NotSettled(outcome, error, redelivery_delay=30.0)
    assert POLICY.dead_letter_retry_delay == 30.0 > POLICY.ack_wait
    quick = dataclasses.replace(POLICY, dead_letter_retry_delay=2.0)
    assert quick.on_dead_letter_failed(outcome, error).redelivery_delay == 2.0


def test_a_refused_ack_is_not_settled_without_a_delay_of_its_own() -> None:
    # It comes back after ack_wait: nothing handed it back.
    assert NotSettled(Acked(), RuntimeError("x")).redelivery_delay is None
