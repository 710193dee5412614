"""A throwaway clustered NATS Streaming service: several nodes, Raft over file stores.

``StanCluster`` runs ``size`` nodes as one clustered NATS Streaming service
(``--clustered``, the nodes' NATS servers joined by routes); a client given
``cluster.url`` (every node) reaches the leader through any of them::

    with StanCluster() as cluster:
        bus = await connect(cluster.url, cluster_id=cluster.cluster_id)
        cluster.leader().kill()
"""

from __future__ import annotations

import asyncio
import os
import time

from common_events.testing.servers.ports import free_loopback_port
from common_events.testing.servers.stan import (
    StanServer,
    StanServerStartError,
    _StartedHere,
)


class StanCluster(_StartedHere):
    """``size`` nats-streaming-server nodes clustered on 127.0.0.1 (file stores, Raft).

    Each node is a ``StanServer`` in ``nodes`` (kill, stop, start or restart one as a
    test needs) with its store and Raft log under ``workdir/<node id>``; the nodes' NATS
    servers are joined by routes, so a client connected to any node reaches the leader.
    ``extra_args`` go to every node (heartbeat settings...). Ready once a leader is
    elected and every node reports its role.

    ``size=1`` is a one-node clustered service (``--cluster_bootstrap``: the node elects
    itself), the shape of a deployment that starts clustered to grow later; it leads at
    once and keeps leading across restarts.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        size: int = 3,
        *,
        cluster_id: str = "test-cluster",
        binary: str | os.PathLike[str] | None = None,
        extra_args: tuple[str, ...] = (),
        ready_timeout: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self._use_workdir(workdir, "common-events-stan-cluster-")
        self.cluster_id = cluster_id
        self.ready_timeout = ready_timeout
        self.node_ids = [f"node{index}" for index in range(size)]
        route_ports = [free_loopback_port() for _ in range(size)]
        self.nodes: list[StanServer] = []
        for index, node_id in enumerate(self.node_ids):
            clustering: tuple[str, ...] = (
                "--clustered",
                "--cluster_node_id", node_id,
                "--cluster_log_path", str(self.workdir / node_id / "raft"),
                "--cluster", f"nats://127.0.0.1:{route_ports[index]}",
            )  # fmt: skip
            if size == 1:
                # Alone, a node given itself as its only peer waits to join a group that
                # nobody forms; it must bootstrap the group and elect itself (only where
                # there is no state yet: a restart recovers the group from its Raft log).
                clustering += ("--cluster_bootstrap",)
            else:
                routes = ",".join(
                    f"nats://127.0.0.1:{port}"
                    for other, port in enumerate(route_ports)
                    if other != index
                )
                clustering += (
                    "--cluster_peers", ",".join(self.node_ids),
                    "--routes", routes,
                )  # fmt: skip
            self.nodes.append(
                StanServer(
                    binary,
                    self.workdir / node_id,
                    cluster_id=cluster_id,
                    file_store=True,
                    extra_args=(*clustering, *extra_args),
                    ready_timeout=ready_timeout,
                )
            )

    @property
    def url(self) -> str:
        """Every node, as the STAN transport takes a server list."""
        return "stan://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    @property
    def nats_url(self) -> str:
        return ",".join(node.nats_url for node in self.nodes)

    def start(self, *, wait: bool = True) -> None:
        """Start every node that is not running (all at once: an election needs a
        quorum); with ``wait``, return once a leader is elected."""
        for node in self.nodes:
            if not node.running:
                node.start(wait=False)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every running node reports its role and one of them leads."""
        limit = timeout if timeout is not None else self.ready_timeout
        deadline = time.monotonic() + limit
        for node in self.nodes:
            if node.running:
                node.wait_ready(max(0.1, deadline - time.monotonic()))
        self.leader(max(0.1, deadline - time.monotonic()))

    def leader(self, within: float = 30.0) -> StanServer:
        """The node that leads now, waiting up to ``within`` seconds for an election."""
        deadline = time.monotonic() + within
        while True:
            for node in self.nodes:
                if node.running and node.role() == "Leader":
                    return node
            if time.monotonic() > deadline:
                roles = {node.node_id: node.role() for node in self.nodes}
                raise StanServerStartError(f"no leader within {within}s; roles: {roles}")
            time.sleep(0.05)

    async def _exit(self) -> None:
        await asyncio.gather(*(node._stop(5.0) for node in self.nodes))

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def cleanup(self) -> None:
        """Stop what still runs and remove the work directory if it was made here."""
        for node in self.nodes:
            node.stop()
        self._remove_own_workdir()
