"""What a nats-server with JetStream holds, read from its monitoring port.

``await read_monitor("http://127.0.0.1:8222")`` reads ``/varz`` (the server),
``/jsz`` (every account's streams and their consumers) and ``/connz`` (the client
connections), with the standard library in a thread so the event loop keeps going;
``render()`` prints them as tables: streams (messages, sequences), consumers (the queue
group they deliver to, whether a listener is bound, pending and ack-pending counts) and
the connections by name. The server must serve monitoring (``-m 8222`` or ``http_port``
in its configuration). This is the JetStream counterpart of
``common_events.transports.stan.monitor``.
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
    "ConnectionSummary",
    "ConsumerSummary",
    "MonitorError",
    "MonitorSnapshot",
    "ServerSummary",
    "StreamSummary",
    "read_monitor",
    "read_monitor_sync",
    "render",
]

logger = logging.getLogger(__name__)

JSZ_PATH = "/jsz?accounts=true&streams=true&consumers=true&config=true"

_PORT = MonitoringPort("a nats-server", "nats-server -m PORT, or http_port in its configuration")


@dataclass(frozen=True, slots=True)
class ServerSummary:
    server_id: str
    server_name: str
    version: str
    uptime: str
    cluster: str | None
    """The cluster's name, ``None`` for a server on its own."""
    connections: int
    jetstream: bool
    """JetStream is enabled on this server."""
    streams: int
    consumers: int
    messages: int
    bytes: int


@dataclass(frozen=True, slots=True)
class ConsumerSummary:
    stream: str
    name: str
    durable: bool
    filter_subject: str | None
    deliver_group: str | None
    """The queue group a push consumer delivers to (a ``Listener``'s ``queue_group``)."""
    bound: bool
    """A subscriber listens: a push consumer's deliver subject has one, or a pull
    consumer has requests waiting. A durable consumer nobody listens to keeps its place."""
    pending: int
    """Messages of its subjects not yet delivered."""
    ack_pending: int
    """Delivered and not yet acknowledged."""
    redelivered: int
    delivered_stream_seq: int
    ack_floor_stream_seq: int
    max_ack_pending: int
    max_deliver: int
    ack_wait: float
    """Seconds."""


@dataclass(frozen=True, slots=True)
class StreamSummary:
    name: str
    account: str
    subjects: tuple[str, ...]
    storage: str
    replicas: int
    leader: str | None
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: tuple[ConsumerSummary, ...]


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    cid: int
    name: str | None
    address: str
    client: str
    """Client library and version, e.g. ``python3 2.16.0``."""
    subscriptions: int
    pending_bytes: int
    in_msgs: int
    out_msgs: int
    uptime: str
    idle: str


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    url: str
    server: ServerSummary
    streams: tuple[StreamSummary, ...]
    connections: tuple[ConnectionSummary, ...]
    raw: dict[str, Any]
    """The JSON documents as the server sent them, by endpoint."""


def _consumer(stream: str, raw: dict[str, Any]) -> ConsumerSummary:
    config = raw.get("config") or {}
    delivered = raw.get("delivered") or {}
    ack_floor = raw.get("ack_floor") or {}
    return ConsumerSummary(
        stream=stream,
        name=str(raw.get("name", "")),
        durable=bool(config.get("durable_name")),
        filter_subject=config.get("filter_subject") or None,
        deliver_group=config.get("deliver_group") or None,
        bound=bool(raw.get("push_bound")) or int(raw.get("num_waiting", 0)) > 0,
        pending=int(raw.get("num_pending", 0)),
        ack_pending=int(raw.get("num_ack_pending", 0)),
        redelivered=int(raw.get("num_redelivered", 0)),
        delivered_stream_seq=int(delivered.get("stream_seq", 0)),
        ack_floor_stream_seq=int(ack_floor.get("stream_seq", 0)),
        max_ack_pending=int(config.get("max_ack_pending", 0)),
        max_deliver=int(config.get("max_deliver", 0)),
        ack_wait=int(config.get("ack_wait", 0)) / 1e9,
    )


def _stream(account: str, raw: dict[str, Any]) -> StreamSummary:
    config = raw.get("config") or {}
    state = raw.get("state") or {}
    name = str(raw.get("name") or config.get("name", ""))
    consumers = [_consumer(name, consumer) for consumer in raw.get("consumer_detail") or []]
    return StreamSummary(
        name=name,
        account=account,
        subjects=tuple(str(subject) for subject in config.get("subjects") or ()),
        storage=str(config.get("storage", "")),
        replicas=int(config.get("num_replicas", 1)),
        leader=(raw.get("cluster") or {}).get("leader") or None,
        messages=int(state.get("messages", 0)),
        bytes=int(state.get("bytes", 0)),
        first_seq=int(state.get("first_seq", 0)),
        last_seq=int(state.get("last_seq", 0)),
        consumers=tuple(sorted(consumers, key=lambda c: (c.filter_subject or "", c.name))),
    )


def _connection(raw: dict[str, Any]) -> ConnectionSummary:
    client = " ".join(str(raw[key]) for key in ("lang", "version") if raw.get(key))
    return ConnectionSummary(
        cid=int(raw.get("cid", 0)),
        name=raw.get("name") or None,
        address=f"{raw.get('ip', '')}:{raw.get('port', '')}",
        client=client,
        subscriptions=int(raw.get("subscriptions", 0)),
        pending_bytes=int(raw.get("pending_bytes", 0)),
        in_msgs=int(raw.get("in_msgs", 0)),
        out_msgs=int(raw.get("out_msgs", 0)),
        uptime=str(raw.get("uptime", "")),
        idle=str(raw.get("idle", "")),
    )


def read_monitor_sync(base_url: str, timeout: float = 5.0) -> MonitorSnapshot:
    """Read ``/varz``, ``/jsz`` and ``/connz`` (blocking)."""
    varz = _PORT.get(base_url, "/varz", timeout)
    jsz, jsz_accounts = _PORT.get_pages(base_url, JSZ_PATH, "account_details", timeout)
    _, connections_raw = _PORT.get_pages(base_url, "/connz", "connections", timeout)
    streams = [
        _stream(str(account.get("name", "")), stream)
        for account in jsz_accounts
        for stream in account.get("stream_detail") or []
    ]
    server = ServerSummary(
        server_id=str(varz.get("server_id", "")),
        server_name=str(varz.get("server_name", "")),
        version=str(varz.get("version", "")),
        uptime=str(varz.get("uptime", "")),
        cluster=(varz.get("cluster") or {}).get("name") or None,
        connections=int(varz.get("connections", 0)),
        jetstream=not jsz.get("disabled", False),
        streams=int(jsz.get("streams", 0)),
        consumers=int(jsz.get("consumers", 0)),
        messages=int(jsz.get("messages", 0)),
        bytes=int(jsz.get("bytes", 0)),
    )
    connections = [_connection(connection) for connection in connections_raw]
    return MonitorSnapshot(
        url=base_url,
        server=server,
        streams=tuple(sorted(streams, key=lambda s: (s.account, s.name))),
        connections=tuple(sorted(connections, key=lambda c: (c.name is None, c.name or "", c.cid))),
        raw={"varz": varz, "jsz": jsz, "accounts": jsz_accounts, "connz": connections_raw},
    )


async def read_monitor(base_url: str, http_timeout: float = 5.0) -> MonitorSnapshot:
    """Read the endpoints without blocking the event loop."""
    return await asyncio.to_thread(read_monitor_sync, base_url, http_timeout)


def render(snapshot: MonitorSnapshot) -> str:
    """The snapshot as plain-text tables."""
    server = snapshot.server
    where = f"cluster {server.cluster!r}" if server.cluster else "standalone"
    jetstream = "JetStream on" if server.jetstream else "JetStream off"
    lines = [
        f"nats-server {server.server_name!r} at {snapshot.url} (version {server.version}, "
        f"{where}, {jetstream}, up {server.uptime})",
        f"{server.connections} connection(s), {server.streams} stream(s), "
        f"{server.consumers} consumer(s), {server.messages} message(s)",
        "",
    ]
    several_accounts = len({stream.account for stream in snapshot.streams}) > 1
    if snapshot.streams:
        headers = ["STREAM", "MESSAGES", "FIRST SEQ", "LAST SEQ", "CONSUMERS", "STORAGE",
                   "REPLICAS"]  # fmt: skip
        rows = [
            [s.name, str(s.messages), str(s.first_seq), str(s.last_seq), str(len(s.consumers)),
             s.storage, str(s.replicas)]
            for s in snapshot.streams
        ]  # fmt: skip
        if several_accounts:
            headers.insert(0, "ACCOUNT")
            for row, stream in zip(rows, snapshot.streams, strict=True):
                row.insert(0, stream.account)
        offset = 1 if several_accounts else 0
        lines.append(render_table(headers, rows, numeric={i + offset for i in (1, 2, 3, 4, 6)}))
    else:
        lines.append("no streams" if server.jetstream else "JetStream is not enabled")
    consumers = [c for s in snapshot.streams for c in s.consumers]
    lines.append("")
    if consumers:
        lines.append(
            render_table(
                ["STREAM", "CONSUMER", "SUBJECT", "QUEUE GROUP", "LISTENING", "PENDING",
                 "ACK PENDING", "REDELIVERED", "LAST DELIVERED"],
                [
                    [c.stream, c.name, c.filter_subject or "-", c.deliver_group or "-",
                     yes_no(c.bound), str(c.pending), str(c.ack_pending), str(c.redelivered),
                     str(c.delivered_stream_seq)]
                    for c in consumers
                ],
                numeric={5, 6, 7, 8},
            )
        )  # fmt: skip
    else:
        lines.append("no consumers")
    lines.append("")
    if snapshot.connections:
        lines.append(
            render_table(
                ["CONNECTION", "CID", "ADDRESS", "CLIENT", "SUBSCRIPTIONS", "IN MSGS",
                 "OUT MSGS", "PENDING BYTES", "UPTIME"],
                [
                    [c.name or "-", str(c.cid), c.address, c.client or "-",
                     str(c.subscriptions), str(c.in_msgs), str(c.out_msgs),
                     str(c.pending_bytes), c.uptime]
                    for c in snapshot.connections
                ],
                numeric={1, 4, 5, 6, 7},
            )
        )  # fmt: skip
    else:
        lines.append("no connections")
    return "\n".join(lines)
