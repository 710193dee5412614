"""The broker of a scenario, whatever the transport: how clients reach it (through the
proxy or not), with which options, and how it crashes and comes back."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import common_events
from common_events import Bus
from common_events.testing.servers import EmbeddedNatsServer
from common_events.testing.servers.stan import StanServer
from tests.faults.proxy import TcpProxy

# The streaming server's window for a client that does not answer its heartbeats: one
# every second, dropped after five missed. A missed heartbeat costs the interval when
# nothing listens any more (the client's connection was reset: about 5.75 s in all,
# measured) and the interval plus the 0.5 s timeout when the network is silent (about
# 8.75 s).
STAN_HEARTBEAT = ("--hb_interval", "1s", "--hb_timeout", "500ms", "--hb_fail_count", "5")
STAN_HEARTBEAT_WINDOW = {"cut": 5.75, "stall": 8.75}

# nats-server's window for a silent client: a PING every second, the client dropped
# after three without answer (a reset connection it drops at once).
JETSTREAM_HEARTBEAT = 'ping_interval: "1s"\nping_max: 3\n'
JETSTREAM_HEARTBEAT_WINDOW = {"cut": 4.0, "stall": 4.0}


@dataclass
class Broker:
    transport: str
    url: str
    """What the clients connect to: the proxy when there is one."""
    server: StanServer | EmbeddedNatsServer
    proxy: TcpProxy | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def connect(self, **extra: Any) -> Any:
        """A ``connect()`` for the ledger's helpers, with this broker's options."""
        options = {**self.options, **extra}

        async def connect() -> Bus:
            return await common_events.connect(self.url, **options)

        return connect

    def heartbeat_window(self, fault: str) -> float:
        """Seconds of a ``"cut"`` or a ``"stall"`` after which the server drops a client."""
        windows = STAN_HEARTBEAT_WINDOW if self.transport == "stan" else JETSTREAM_HEARTBEAT_WINDOW
        return windows[fault]

    async def stored(self) -> int:
        """Messages the broker holds, from its monitoring endpoint."""
        server = self.server
        if isinstance(server, StanServer):
            serverz = await asyncio.to_thread(server.monitor, "/streaming/serverz")
            return int(serverz.get("total_msgs", 0))
        url = f"http://127.0.0.1:{server.monitor_port}/jsz"
        return int((await asyncio.to_thread(_get_json, url)).get("messages", 0))

    async def wait_stored(self, count: int, within: float) -> bool:
        """Wait until the broker holds ``count`` messages (polled, at most ``within`` s)."""
        deadline = asyncio.get_running_loop().time() + within
        while await self.stored() < count:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def kill(self) -> None:
        """SIGKILL, as a crash: no flush, no goodbye."""
        self.server.kill()

    async def start_again(self) -> None:
        """Start the killed server on its ports and store; return once it is ready."""
        server = self.server
        if isinstance(server, StanServer):
            server.start(wait=False)
            await asyncio.to_thread(server.wait_ready)
        else:
            await server.start()


def stan_broker(server: StanServer, proxy: TcpProxy | None) -> Broker:
    port = proxy.port if proxy is not None else server.port
    return Broker(
        "stan",
        f"stan://127.0.0.1:{port}",
        server,
        proxy,
        {"cluster_id": server.cluster_id},
    )


def jetstream_broker(server: EmbeddedNatsServer, proxy: TcpProxy | None) -> Broker:
    port = proxy.port if proxy is not None else server.port
    return Broker("jetstream", f"nats://127.0.0.1:{port}", server, proxy)


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data
