"""A consumer slower than its ack wait: messages wait in the client longer than the
broker waits for their acks, so the broker sends them again while the first copies are
still queued. Nothing may be lost; the extra deliveries are counted."""

from __future__ import annotations

import pytest

from tests.faults.conftest import BrokerFactory
from tests.faults.ledger import Ledger
from tests.faults.traffic import Publishing, Service

EVENTS = 100
HANDLING_TIME = 0.03
"""Seconds each message takes; with 64 in flight the last waits about 2 s, twice the
ack wait."""
SETTINGS = {"ack_wait": 1.0, "max_in_flight": 64}
DRAIN_BOUND = 60.0


@pytest.mark.parametrize("transport", ["stan", "jetstream"])
async def test_a_consumer_slower_than_its_ack_wait(
    broker_factory: BrokerFactory, transport: str
) -> None:
    broker = await broker_factory(transport, proxy=False)
    ledger = Ledger(f"{transport}: slow consumer ({HANDLING_TIME * 1000:g} ms a message)")
    async with Service(
        broker.connect(), ledger, handling_time=HANDLING_TIME, settings=SETTINGS
    ) as service:
        publishing = Publishing(broker.connect(), ledger, workers=0)
        await publishing.start()
        try:
            await publishing.burst(EVENTS)
        finally:
            await publishing.stop(within=5)
        ledger.mark("published")
        drained = await ledger.wait_all_confirmed_delivered(within=DRAIN_BOUND)
    ledger.note(
        f"handled {len(ledger.deliveries)} times for {EVENTS} events, "
        f"done {ledger.deliveries[-1].at - ledger.marks['published']:.1f}s after publishing"
    )
    report = ledger.report()
    assert report.confirmed == EVENTS and report.failed == 0, report.line()
    assert drained and report.lost == 0, f"confirmed but not delivered: {ledger.lost_ids()}"
    assert report.doubled == 0, report.line()
    assert service.restarts == 0
