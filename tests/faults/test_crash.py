"""The broker is SIGKILLed under traffic and started again on its file store: the
clients reconnect to it, and what it had confirmed is still there."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import BrokerFactory
from tests.faults.ledger import Ledger
from tests.faults.traffic import Publishing, Service

RECOVERY_TARGET = 2.0
"""Publishing is confirmed again within this many seconds of the server being ready."""
DOWN = 1.0
"""How long the server stays dead."""
RECOVERY_BOUND = 35.0
DRAIN_BOUND = 30.0
BURST = 100


@pytest.mark.parametrize("transport", ["stan", "jetstream"])
async def test_the_server_is_killed_and_restarted_on_its_file_store(
    broker_factory: BrokerFactory, transport: str
) -> None:
    broker = await broker_factory(transport, proxy=False, file_store=True)
    ledger = Ledger(f"{transport}: server SIGKILL, restart on its file store")
    async with Service(broker.connect(), ledger) as service:
        publishing = await Publishing(broker.connect(), ledger).start()
        try:
            assert await ledger.wait_delivered(100, within=15)
            confirmed = len(ledger.confirmed)
            publishing.burst(BURST)
            assert await ledger.wait_until(
                lambda: len(ledger.confirmed) >= confirmed + 10, within=10
            )
            ledger.mark("kill")
            await broker.kill()
            await asyncio.sleep(DOWN)  # the time the server stays dead
            await broker.start_again()
            ledger.mark("restart")
            back = await ledger.wait_publishing_back("restart", within=RECOVERY_BOUND)
            await ledger.wait_confirmed_since("restart", 100, within=10)
        finally:
            await publishing.stop(within=5)
        drained = await ledger.wait_all_confirmed_delivered(within=DRAIN_BOUND)
    ledger.note(
        f"service restarts {service.restarts}, publisher reconnects "
        f"{publishing.new_connections}"
    )
    report = ledger.report("restart")
    recovery = report.recoveries[0]
    assert back, report.line()
    assert drained and report.lost == 0, f"confirmed but not delivered: {ledger.lost_ids()}"
    # The file store remembers the clients: the same sessions carry on.
    assert service.restarts == 0 and publishing.new_connections == 0, report.line()
    assert recovery.publishing is not None and recovery.publishing <= RECOVERY_TARGET, (
        report.line()
    )
