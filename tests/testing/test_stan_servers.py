"""The throwaway NATS Streaming servers themselves: what ``StanServer.role()`` says for
each shape of service, and a one-node ``StanCluster`` (a real deployment shape) that
starts, leads, and keeps its messages across a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from common_events.testing.servers import StanCluster, StanServer
from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.stan import connect

SUBJECT = "ticket:created"
TOTAL = 20


async def publish(url: str, cluster_id: str, count: int) -> None:
    transport = await connect(url, cluster_id=cluster_id)
    try:
        await asyncio.gather(
            *(transport.publish(SUBJECT, f'{{"n":{n}}}'.encode()) for n in range(count))
        )
    finally:
        await transport.close()


async def read_all(url: str, cluster_id: str, count: int) -> list[bytes]:
    """Every stored message of ``SUBJECT`` from the first, in order."""
    received: list[bytes] = []
    done = asyncio.Event()

    async def handle(message: TransportMessage) -> None:
        received.append(message.data)
        await message.ack()
        if len(received) >= count:
            done.set()

    transport = await connect(url, cluster_id=cluster_id)
    try:
        await transport.subscribe(SUBJECT, handle, SubscriptionOptions())
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        await transport.close()
    return received


def test_a_server_on_its_own_says_it_is_standalone(
    stan_server_binary: Path, tmp_path: Path
) -> None:
    server = StanServer(stan_server_binary, tmp_path)
    assert server.role() is None  # not started: nothing answers
    with server:
        assert server.role() == "Standalone"
        assert not server.clustered
    assert server.role() is None  # stopped


async def test_a_one_node_cluster_starts_leads_and_keeps_its_messages_across_a_restart(
    stan_server_binary: Path, tmp_path: Path
) -> None:
    async with StanCluster(tmp_path, size=1, binary=stan_server_binary) as cluster:
        (node,) = cluster.nodes
        assert node.clustered
        assert cluster.leader(within=0) is node
        assert node.role() == "Leader"

        await publish(cluster.url, cluster.cluster_id, TOTAL)
        node.restart()  # same store and Raft log: no bootstrap again, it leads again
        assert cluster.leader(within=10) is node
        received = await read_all(cluster.url, cluster.cluster_id, TOTAL)

    assert sorted(received) == sorted(f'{{"n":{n}}}'.encode() for n in range(TOTAL))
    assert node.role() is None


def test_the_nodes_of_a_three_node_cluster_settle_as_one_leader_and_two_followers(
    stan_server_binary: Path, tmp_path: Path
) -> None:
    with StanCluster(tmp_path, size=3, binary=stan_server_binary) as cluster:
        # Ready means every node reports Leader or Follower; right after an election a
        # deposed leader may still say so for a moment, hence the polling.
        deadline = time.monotonic() + 10
        settled = ["Follower", "Follower", "Leader"]
        while (roles := sorted(str(node.role()) for node in cluster.nodes)) != settled:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert roles == settled
