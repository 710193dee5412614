"""The network between the services and the broker fails: connections reset and new
ones refused for a while (``cut``), or nothing gets through and nobody is told
(``stall``). Shorter than the server's heartbeat window, a client carries on with the
same session; longer, the server forgets it and the service starts afresh."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.brokers import Broker
from tests.faults.conftest import BrokerFactory
from tests.faults.ledger import Ledger
from tests.faults.traffic import Publishing, Service

TRANSPORTS = ["stan", "jetstream"]

SHORT_CUT = 3.0
RECOVERY_TARGET = 2.0
"""Publishing is confirmed again within this many seconds of the network being back."""

# Bounds of the waits: a recovery that takes longer fails the scenario, it does not hang
# it (the longest a publish can wait for its confirmation is the STAN default, 30 s).
RECOVERY_BOUND = 35.0
DRAIN_BOUND = 30.0

# Publishes sent at once, twice, when the network is cut.
BURST = 100


async def cut_with_publishes_on_the_wire(
    ledger: Ledger, publishing: Publishing, broker: Broker
) -> None:
    """Cut the network while publishes are on the wire, whatever the timing: one burst
    reaches the broker and is stored but its confirmations are lost with the link, the
    next is lost on the way to the broker."""
    proxy = broker.proxy
    assert proxy is not None
    stored = await broker.stored()
    proxy.stall(to_server=False)
    publishing.burst(BURST)
    assert await broker.wait_stored(stored + BURST, within=10)
    proxy.stall()
    publishing.burst(BURST)
    assert await ledger.wait_until(lambda: len(ledger.unsettled_ids()) >= 2 * BURST, within=5)
    ledger.mark("cut")
    proxy.cut(refuse=True)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_cut_shorter_than_the_heartbeat_window(
    broker_factory: BrokerFactory, transport: str
) -> None:
    broker = await broker_factory(transport)
    assert broker.proxy is not None
    assert broker.heartbeat_window > SHORT_CUT
    ledger = Ledger(f"{transport}: network cut {SHORT_CUT:.0f}s (< heartbeat window)")
    async with Service(broker.connect(), ledger) as service:
        publishing = await Publishing(broker.connect(), ledger).start()
        try:
            assert await ledger.wait_delivered(100, within=15)
            await cut_with_publishes_on_the_wire(ledger, publishing, broker)
            await asyncio.sleep(SHORT_CUT)  # the length of the outage
            broker.proxy.restore()
            ledger.mark("restore")
            back = await ledger.wait_publishing_back("restore", within=RECOVERY_BOUND)
            await ledger.wait_confirmed_since("restore", 200, within=10)
        finally:
            await publishing.stop(within=5)
        drained = await ledger.wait_all_confirmed_delivered(within=DRAIN_BOUND)
    report = ledger.report("restore")
    recovery = report.recoveries[0]
    assert back, "publishing never came back"
    assert drained and report.lost == 0, f"confirmed but not delivered: {ledger.lost_ids()}"
    assert service.restarts == 0, service.exits
    assert publishing.new_connections == 0
    assert recovery.publishing is not None and recovery.publishing <= RECOVERY_TARGET, report.line()
