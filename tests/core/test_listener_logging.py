"""The listener's log: a DEBUG line per delivery, failures whose first line names the
exception, and structured fields on every record of a delivery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from common_events import Bus, Listener, Message, OutOfOrder, TicketUpdatedEvent, connect
from common_events.core import Acked, DeadLettered, OutOfOrderLater, RetryLater
from tests.core.test_listener_outcomes import StubMessage

EVENT = TicketUpdatedEvent(id="t1", version=2, title="x", price=1, user_id="u1")
FIELDS = ("subject", "sequence", "delivery_count", "queue_group", "listener")


class PaymentsListener(Listener[TicketUpdatedEvent]):
    queue_group = "payments-service"
    max_deliveries = 3

    def __init__(self, bus: Bus, raises: Exception | None = None) -> None:
        super().__init__(bus)
        self.raises = raises

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        if self.raises is not None:
            raise self.raises
        await msg.ack()


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with await connect("memory://") as bus:
        yield bus


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="common_events.core.listener")
    return caplog


def of_the_listener(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.name == "common_events.core.listener.PaymentsListener"]


def assert_fields(record: logging.LogRecord, *, delivery_count: int = 1) -> None:
    assert {name: record.__dict__[name] for name in FIELDS} == {
        "subject": "ticket:updated",
        "sequence": 5,
        "delivery_count": delivery_count,
        "queue_group": "payments-service",
        "listener": "PaymentsListener",
    }, record.getMessage()


async def test_each_delivery_has_debug_lines_with_the_structured_fields(
    bus: Bus, logs: pytest.LogCaptureFixture
) -> None:
    outcome = await PaymentsListener(bus).handle_delivery(StubMessage())

    assert outcome == Acked()
    received, settled = of_the_listener(logs.records)
    assert (received.levelno, settled.levelno) == (logging.DEBUG, logging.DEBUG)
    assert received.getMessage() == "ticket:updated #5 delivery 1: received"
    assert settled.getMessage().startswith("ticket:updated #5 delivery 1: acked (handler ")
    assert_fields(received)
    assert_fields(settled)


async def test_at_info_a_handled_delivery_logs_nothing(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="common_events.core.listener")

    await PaymentsListener(bus).handle_delivery(StubMessage())

    assert of_the_listener(caplog.records) == []


async def test_the_first_line_of_a_failure_names_the_exception_and_what_happens_next(
    bus: Bus, logs: pytest.LogCaptureFixture
) -> None:
    error = ConnectionError("database unavailable")

    outcome = await PaymentsListener(bus, error).handle_delivery(StubMessage(delivery_count=2))

    assert isinstance(outcome, RetryLater)
    (failure,) = [r for r in of_the_listener(logs.records) if r.levelno >= logging.WARNING]
    assert failure.levelno == logging.ERROR
    first_line = failure.getMessage().splitlines()[0]
    assert first_line == (
        "ticket:updated #5 (delivery 2 of at most 3): handler raised ConnectionError: "
        "database unavailable; retrying in 0.4s"
    )
    assert failure.exc_info is not None and failure.exc_info[1] is error
    assert_fields(failure, delivery_count=2)
    for record in of_the_listener(logs.records):
        assert_fields(record, delivery_count=2)


async def test_the_last_failure_and_its_dead_letter_carry_the_fields(
    bus: Bus, logs: pytest.LogCaptureFixture
) -> None:
    outcome = await PaymentsListener(bus, ValueError("no such account")).handle_delivery(
        StubMessage(delivery_count=3)
    )

    assert isinstance(outcome, DeadLettered)
    failure, sent = [r for r in of_the_listener(logs.records) if r.levelno >= logging.WARNING]
    assert failure.getMessage().splitlines()[0] == (
        "ticket:updated #5 (delivery 3 of at most 3): handler raised ValueError: no such "
        "account; no deliveries left, it goes to dead-letter:ticket:updated"
    )
    assert sent.getMessage().startswith(
        "ticket:updated #5 sent to dead-letter:ticket:updated (inline): max_deliveries: "
        "ValueError: no such account"
    )
    for record in of_the_listener(logs.records):
        assert_fields(record, delivery_count=3)


async def test_an_invalid_payload_is_logged_with_its_reason_and_the_fields(
    bus: Bus, logs: pytest.LogCaptureFixture
) -> None:
    outcome = await PaymentsListener(bus).handle_delivery(StubMessage(b"{not json"))

    assert isinstance(outcome, DeadLettered)
    (sent,) = [r for r in of_the_listener(logs.records) if r.levelno >= logging.WARNING]
    assert "(inline): invalid_json: " in sent.getMessage()
    assert_fields(sent)


async def test_out_of_order_is_an_info_line_with_the_fields(
    bus: Bus, logs: pytest.LogCaptureFixture
) -> None:
    error = OutOfOrder("have v0, got v2")

    outcome = await PaymentsListener(bus, error).handle_delivery(StubMessage())

    assert isinstance(outcome, OutOfOrderLater)
    (line,) = [r for r in of_the_listener(logs.records) if r.levelno == logging.INFO]
    assert line.getMessage() == (
        "ticket:updated #5 (delivery 1 of at most 3) is out of order (have v0, got v2); "
        "delivered again in 0.2s"
    )
    assert_fields(line)
    assert not [r for r in of_the_listener(logs.records) if r.levelno >= logging.WARNING]


async def test_a_broker_refusing_the_ack_is_logged_with_the_fields(
    bus: Bus, logs: pytest.LogCaptureFixture
) -> None:
    from common_events import TransportError

    class Refuses(PaymentsListener):
        async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
            raise RuntimeError("boom")

    message = StubMessage(refuse=TransportError("connection closed"))

    await Refuses(bus).handle_delivery(message)

    logged = [r for r in logs.records if r.name.endswith(".Refuses") and r.levelno >= logging.ERROR]
    assert any("could not settle" in r.getMessage() for r in logged)
    for record in logged:
        assert record.__dict__["listener"] == "Refuses"
        assert record.__dict__["sequence"] == 5


async def test_a_listener_on_a_real_subscription_logs_the_same_fields(
    bus: Bus, logs: pytest.LogCaptureFixture
) -> None:
    done = asyncio.Event()

    class Signals(PaymentsListener):
        async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
            await msg.ack()
            done.set()

    listener = await Signals(bus).listen()
    await bus.publish("ticket:updated", EVENT.model_dump_json().encode())
    async with asyncio.timeout(5):
        await done.wait()
    await listener.close()

    of_signals = [r for r in logs.records if r.name.endswith(".Signals")]
    delivery = [r for r in of_signals if "#1" in r.getMessage()]
    assert len(delivery) == 2
    for record in delivery:
        assert record.__dict__["sequence"] == 1 and record.__dict__["listener"] == "Signals"
        assert record.__dict__["queue_group"] == "payments-service"
