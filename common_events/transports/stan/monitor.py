"""What a NATS Streaming server holds, read from its monitoring endpoints.

``await read_monitor("http://127.0.0.1:8222")`` reads ``/streaming/serverz``,
``/streaming/channelsz?subs=1`` and ``/streaming/clientsz`` (stdlib HTTP, in a thread so
the event loop keeps going) and ``render()`` prints channels and their subscriptions as
a table: the reference course's health check, without a browser. The server must run
with monitoring on (``-m 8222``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from common_events.transports.nats_connection.monitoring import (
    PAGE_SIZE,
    MonitorError,
    MonitoringPort,
    render_table,
    yes_no,
)

__all__ = [
    "PAGE_SIZE",
    "ChannelSummary",
    "ClientSummary",
    "MonitorError",
    "MonitorSnapshot",
    "ServerSummary",
    "SubscriptionSummary",
    "read_monitor",
    "read_monitor_sync",
    "render",
]

logger = logging.getLogger(__name__)

_PORT = MonitoringPort("a NATS Streaming server", "nats-streaming-server -m PORT")


@dataclass(frozen=True, slots=True)
class ServerSummary:
    cluster_id: str
    server_id: str
    version: str
    state: str
    uptime: str
    clients: int
    subscriptions: int
    channels: int
    total_msgs: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class SubscriptionSummary:
    channel: str
    client_id: str
    queue_group: str | None
    durable_name: str | None
    offline: bool
    pending: int
    stalled: bool
    last_sent: int
    max_in_flight: int
    ack_wait: int


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    name: str
    msgs: int
    bytes: int
    first_seq: int
    last_seq: int
    subscriptions: tuple[SubscriptionSummary, ...]


@dataclass(frozen=True, slots=True)
class ClientSummary:
    client_id: str
    subscriptions: int


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    url: str
    server: ServerSummary
    channels: tuple[ChannelSummary, ...]
    clients: tuple[ClientSummary, ...]
    raw: dict[str, Any]
    """The JSON documents as the server sent them, by endpoint."""


def _split_queue_name(sub: dict[str, Any]) -> tuple[str | None, str | None]:
    """(queue group, durable name). The server names a durable queue group
    ``<durable>:<group>``; a durable name of a queue member never contains ``:``."""
    queue_name = sub.get("queue_name") or None
    durable = sub.get("durable_name") or None
    if queue_name and sub.get("is_durable") and ":" in queue_name:
        durable, queue_name = queue_name.split(":", 1)
    return queue_name, durable


def read_monitor_sync(base_url: str, timeout: float = 5.0) -> MonitorSnapshot:
    """Read the three endpoints (blocking)."""
    serverz = _PORT.get(base_url, "/streaming/serverz", timeout)
    _, channels_raw = _PORT.get_pages(base_url, "/streaming/channelsz?subs=1", "channels", timeout)
    _, clients_raw = _PORT.get_pages(base_url, "/streaming/clientsz", "clients", timeout)
    server = ServerSummary(
        cluster_id=str(serverz.get("cluster_id", "")),
        server_id=str(serverz.get("server_id", "")),
        version=str(serverz.get("version", "")),
        state=str(serverz.get("state", "")),
        uptime=str(serverz.get("uptime", "")),
        clients=int(serverz.get("clients", 0)),
        subscriptions=int(serverz.get("subscriptions", 0)),
        channels=int(serverz.get("channels", 0)),
        total_msgs=int(serverz.get("total_msgs", 0)),
        total_bytes=int(serverz.get("total_bytes", 0)),
    )
    channels = []
    for channel in sorted(channels_raw, key=lambda c: str(c.get("name", ""))):
        subs = []
        for sub in channel.get("subscriptions") or []:
            queue_group, durable = _split_queue_name(sub)
            subs.append(
                SubscriptionSummary(
                    channel=str(channel.get("name", "")),
                    client_id=str(sub.get("client_id", "")),
                    queue_group=queue_group,
                    durable_name=durable,
                    offline=bool(sub.get("is_offline", False)),
                    pending=int(sub.get("pending_count", 0)),
                    stalled=bool(sub.get("is_stalled", False)),
                    last_sent=int(sub.get("last_sent", 0)),
                    max_in_flight=int(sub.get("max_inflight", 0)),
                    ack_wait=int(sub.get("ack_wait", 0)),
                )
            )
        channels.append(
            ChannelSummary(
                name=str(channel.get("name", "")),
                msgs=int(channel.get("msgs", 0)),
                bytes=int(channel.get("bytes", 0)),
                first_seq=int(channel.get("first_seq", 0)),
                last_seq=int(channel.get("last_seq", 0)),
                subscriptions=tuple(
                    sorted(subs, key=lambda s: (s.queue_group or "", s.client_id))
                ),
            )
        )
    clients = tuple(
        ClientSummary(client_id=str(c.get("id", "")), subscriptions=int(c.get("subs_count", 0)))
        for c in sorted(clients_raw, key=lambda c: str(c.get("id", "")))
    )
    return MonitorSnapshot(
        url=base_url,
        server=server,
        channels=tuple(channels),
        clients=clients,
        raw={"serverz": serverz, "channelsz": channels_raw, "clientsz": clients_raw},
    )


async def read_monitor(base_url: str, http_timeout: float = 5.0) -> MonitorSnapshot:
    """Read the three endpoints without blocking the event loop."""
    return await asyncio.to_thread(read_monitor_sync, base_url, http_timeout)


def render(snapshot: MonitorSnapshot) -> str:
    """The snapshot as plain-text tables."""
    server = snapshot.server
    lines = [
        f"NATS Streaming cluster {server.cluster_id!r} at {snapshot.url} "
        f"(server {server.version}, {server.state.lower() or 'unknown state'}, "
        f"up {server.uptime})",
        f"{server.clients} client(s), {server.channels} channel(s), "
        f"{server.subscriptions} subscription(s), {server.total_msgs} message(s)",
        "",
    ]
    if snapshot.channels:
        lines.append(
            render_table(
                ["CHANNEL", "MESSAGES", "FIRST SEQ", "LAST SEQ", "SUBSCRIPTIONS"],
                [
                    [c.name, str(c.msgs), str(c.first_seq), str(c.last_seq),
                     str(len(c.subscriptions))]
                    for c in snapshot.channels
                ],
                numeric={1, 2, 3, 4},
            )
        )
    else:
        lines.append("no channels")
    subs = [s for c in snapshot.channels for s in c.subscriptions]
    lines.append("")
    if subs:
        lines.append(
            render_table(
                ["CHANNEL", "CLIENT", "QUEUE GROUP", "DURABLE", "OFFLINE", "PENDING",
                 "STALLED", "LAST SENT"],
                [
                    [s.channel, s.client_id or "-", s.queue_group or "-", s.durable_name or "-",
                     yes_no(s.offline), str(s.pending), yes_no(s.stalled), str(s.last_sent)]
                    for s in subs
                ],
                numeric={5, 7},
            )
        )
    else:
        lines.append("no subscriptions")
    lines.append("")
    if snapshot.clients:
        lines.append(
            render_table(
                ["CLIENT", "SUBSCRIPTIONS"],
                [[c.client_id, str(c.subscriptions)] for c in snapshot.clients],
                numeric={1},
            )
        )
    else:
        lines.append("no clients")
    return "\n".join(lines)
