"""The network between the services and the broker fails: connections reset and new
ones refused for a while (``cut``), or nothing gets through and nobody is told
(``stall``). Shorter than the server's heartbeat window, a client carries on with the
same session; longer, a NATS Streaming server forgets the client and the service starts
afresh (``run_service`` exits with ``ConnectionLost``; here, as an orchestrator would, a
new connection is made), while JetStream's server-side consumers let it simply resume.

Every fault starts with publishes on the wire whatever the timing: one burst reaches the
broker and is stored but its confirmations are held, the next is held on its way; a cut
drops both, a stall delivers both late."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from tests.faults.brokers import Broker
from tests.faults.conftest import BrokerFactory
from tests.faults.ledger import Ledger, Report
from tests.faults.traffic import Publishing, Service

RECOVERY_TARGET = 2.0
"""Publishing is confirmed again within this many seconds of the network being back."""

SHORT = 3.0
"""A fault shorter than both servers' heartbeat windows."""
LONG_MARGIN = 2.0
"""A long fault lasts the heartbeat window and this much more."""

# Bounds of the waits: a recovery that takes longer fails the scenario, it does not hang
# it (the longest a publish can wait for its confirmation is the STAN default, 30 s).
RECOVERY_BOUND = 35.0
DRAIN_BOUND = 30.0

# Publishes sent at once, twice, as the fault begins.
BURST = 100


@dataclass
class Outcome:
    report: Report
    back: bool
    drained: bool
    restarts: int
    new_connections: int

    @property
    def publishing(self) -> float | None:
        return self.report.recoveries[0].publishing


async def network_fault(broker: Broker, fault: str, seconds: float, name: str) -> Outcome:
    proxy = broker.proxy
    assert proxy is not None
    ledger = Ledger(f"{broker.transport}: {name}")
    async with Service(broker.connect(), ledger) as service:
        publishing = await Publishing(broker.connect(), ledger).start()
        try:
            assert await ledger.wait_delivered(100, within=15)
            stored = await broker.stored()
            ledger.mark("burst")
            proxy.stall(to_server=False)
            publishing.burst(BURST)
            assert await broker.wait_stored(stored + BURST, within=10)
            proxy.stall()
            publishing.burst(BURST)
            assert await ledger.wait_until(
                lambda: len(ledger.unsettled_ids()) >= 2 * BURST, within=5
            )
            ledger.mark(fault)
            if fault == "cut":
                proxy.cut(refuse=True)
            await asyncio.sleep(seconds)  # the length of the outage
            proxy.restore()
            ledger.mark("restore")
            back = await ledger.wait_publishing_back("restore", within=RECOVERY_BOUND)
            await ledger.wait_confirmed_since("restore", 200, within=10)
        finally:
            await publishing.stop(within=5)
        drained = await ledger.wait_all_confirmed_delivered(within=DRAIN_BOUND)
    ledger.note(
        f"service restarts {service.restarts}, publisher reconnects "
        f"{publishing.new_connections}, the {fault} began "
        f"{ledger.marks[fault] - ledger.marks['burst']:.1f}s after the first burst"
    )
    if ledger.failed:
        kinds = sorted({text.split(":")[0] for _, text in ledger.failed.values()})
        times = sorted(when - ledger.marks[fault] for when, _ in ledger.failed.values())
        ledger.note(
            f"publish errors {', '.join(kinds)}, {times[0]:.1f}s to {times[-1]:.1f}s "
            f"after the {fault} began"
        )
    report = ledger.report("restore")
    return Outcome(report, back, drained, service.restarts, publishing.new_connections)


def assert_nothing_lost(outcome: Outcome) -> None:
    report = outcome.report
    assert outcome.back, f"publishing never came back: {report.line()}"
    assert outcome.drained and report.lost == 0, report.line()


@pytest.mark.parametrize("transport", ["stan", "jetstream"])
@pytest.mark.parametrize("fault", ["cut", "stall"])
async def test_a_fault_shorter_than_the_heartbeat_window(
    broker_factory: BrokerFactory, transport: str, fault: str
) -> None:
    broker = await broker_factory(transport)
    assert broker.heartbeat_window(fault) > SHORT
    outcome = await network_fault(broker, fault, SHORT, f"network {fault} {SHORT:g}s")
    assert_nothing_lost(outcome)
    # The same session carries on.
    assert outcome.restarts == 0 and outcome.new_connections == 0, outcome.report.line()
    assert outcome.publishing is not None and outcome.publishing <= RECOVERY_TARGET, (
        outcome.report.line()
    )


@pytest.mark.parametrize("transport", ["stan", "jetstream"])
@pytest.mark.parametrize(
    "fault", ["cut", pytest.param("stall", marks=pytest.mark.faults_full)]
)
async def test_a_fault_longer_than_the_heartbeat_window(
    broker_factory: BrokerFactory, transport: str, fault: str
) -> None:
    broker = await broker_factory(transport)
    seconds = broker.heartbeat_window(fault) + LONG_MARGIN
    outcome = await network_fault(broker, fault, seconds, f"network {fault} {seconds:g}s")
    assert_nothing_lost(outcome)
    assert outcome.publishing is not None and outcome.publishing <= RECOVERY_TARGET, (
        outcome.report.line()
    )
    if transport == "stan":
        # The server forgot the clients: the service exited with ConnectionLost and
        # was started again; the publisher needed a new connection too.
        assert outcome.restarts >= 1 and outcome.new_connections >= 1, outcome.report.line()
