"""A 3-node cluster loses its leader under traffic: the NATS Streaming cluster
(``--clustered``, Raft on file stores) its leader, JetStream the leader of an R3
stream. Publishers sit on the doomed node and on a survivor; a probe on a connection of
its own finds when the cluster takes publishes again, and recovery counts from then."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import common_events
from common_events import Bus
from common_events.testing.servers import EmbeddedNatsCluster, EmbeddedNatsServer, StanCluster
from tests.faults.ledger import Ledger
from tests.faults.traffic import Connect, Probe, Publishing, Service

RECOVERY_TARGET = 2.0
"""NATS Streaming: publishing is confirmed again within this many seconds of the
cluster taking publishes again."""
ELECTION_BOUND = 60.0
RECOVERY_BOUND = 35.0
DRAIN_BOUND = 60.0
BURST = 100


def connecting(url: str, **options: Any) -> Connect:
    async def connect() -> Bus:
        return await common_events.connect(url, **options)

    return connect


async def lose_the_leader(
    ledger: Ledger,
    kill: Any,
    service: Service,
    publishers: list[Publishing],
    probe: Probe,
) -> bool:
    """Kill the leader with bursts on the wire, find when the cluster takes publishes
    again, and wait for publishing to be confirmed again; whether it was."""
    assert await ledger.wait_delivered(100, within=20)
    confirmed = len(ledger.confirmed)
    for publishing in publishers:
        publishing.burst(BURST)
    # Some of the bursts confirmed, the rest on the wire or in the leader's hands.
    assert await ledger.wait_until(lambda: len(ledger.confirmed) >= confirmed + 10, within=10)
    ledger.mark("kill")
    kill()
    ledger.mark("accepting", await probe.accepting(within=ELECTION_BOUND))
    back = await ledger.wait_publishing_back("accepting", within=RECOVERY_BOUND)
    await ledger.wait_confirmed_since("accepting", 100, within=20)
    return back


@pytest.mark.faults_full
async def test_a_stan_cluster_loses_its_leader_under_traffic(
    stan_server_binary: Path, tmp_path: Path
) -> None:
    async with StanCluster(tmp_path / "stan", binary=stan_server_binary) as cluster:
        leader = cluster.leader()
        survivor = next(node for node in cluster.nodes if node is not leader)
        options = {"cluster_id": cluster.cluster_id}
        ledger = Ledger("stan cluster: leader SIGKILLed under traffic")
        async with (
            Service(connecting(cluster.url, **options), ledger) as service,
            Probe(connecting(survivor.url, publish_timeout=0.3, **options)) as probe,
        ):
            # One publisher's connection goes down with the leader (and reconnects to
            # another node); the other's stays up while the leader behind it is gone.
            publishers = [
                await Publishing(connecting(node.url, **options), ledger, prefix=name).start()
                for name, node in (("on-leader", leader), ("on-survivor", survivor))
            ]
            try:
                back = await lose_the_leader(ledger, leader.kill, service, publishers, probe)
            finally:
                for publishing in publishers:
                    await publishing.stop(within=5)
            drained = await ledger.wait_all_confirmed_delivered(within=DRAIN_BOUND)
        new_leader = cluster.leader()
    ledger.note(f"new leader {new_leader.node_id}, service restarts {service.restarts}")
    report = ledger.report("kill", "accepting")
    assert back, report.line()
    assert drained and report.lost == 0, f"confirmed but not delivered: {ledger.lost_ids()}"
    recovery = report.recoveries[1]
    assert recovery.publishing is not None and recovery.publishing <= RECOVERY_TARGET, (
        report.line()
    )
    assert all(publishing.new_connections == 0 for publishing in publishers)


def stream_leader(node: EmbeddedNatsServer, stream: str = "EVENTS") -> str:
    url = f"http://127.0.0.1:{node.monitor_port}/jsz?accounts=true&streams=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        jsz = json.loads(response.read())
    for account in jsz.get("account_details") or []:
        for detail in account.get("stream_detail") or []:
            if detail.get("name") == stream:
                return str(detail["cluster"]["leader"])
    raise LookupError(f"stream {stream} not found on {node.server_name}")


@pytest.mark.faults_full
async def test_a_jetstream_cluster_loses_its_stream_leader_under_traffic(
    nats_cluster: EmbeddedNatsCluster,
) -> None:
    options = {"replicas": 3}
    ledger = Ledger("jetstream cluster: stream leader SIGKILLed under traffic")
    async with Service(connecting(nats_cluster.url, **options), ledger) as service:
        leader_name = await asyncio.to_thread(stream_leader, nats_cluster.nodes[0])
        leader = next(node for node in nats_cluster.nodes if node.server_name == leader_name)
        survivor = next(node for node in nats_cluster.nodes if node is not leader)
        probing = connecting(
            survivor.url, publish_timeout=0.5, publish_attempt_timeout=0.25, **options
        )
        async with Probe(probing) as probe:
            publishers = [
                await Publishing(connecting(node.url, **options), ledger, prefix=name).start()
                for name, node in (("on-leader", leader), ("on-survivor", survivor))
            ]
            try:
                back = await lose_the_leader(ledger, leader.kill, service, publishers, probe)
            finally:
                for publishing in publishers:
                    await publishing.stop(within=15)
            drained = await ledger.wait_all_confirmed_delivered(within=DRAIN_BOUND)
    new_leader = await asyncio.to_thread(stream_leader, survivor)
    ledger.note(f"new stream leader {new_leader}, service restarts {service.restarts}")
    report = ledger.report("kill", "accepting")
    assert back, report.line()
    assert drained and report.lost == 0, f"confirmed but not delivered: {ledger.lost_ids()}"
