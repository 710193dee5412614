"""Publishes that survive an outage: a reconnect, or a cluster changing its leader.

A publish whose bytes or PubAck were lost in an outage would otherwise wait for its
whole timeout although the server takes publishes again long before. So after every
reconnect of the NATS connection, and whenever a publish has waited ``stall_after``
seconds for its PubAck (a leader lost behind the node we are connected to), the session
PINGs the server. While the PING gets no answer (no responder: no leader
yet; or no reply in time), it asks again every ``probe_interval`` seconds. Once the
server answers, the publishes that were sent before the outage was seen and are still
waiting go again at once, with the same guid; the server stores them (again, if the
first copy had arrived: delivery is at-least-once) and their PubAcks settle them. A
server that has forgotten the client answers with an error instead, and the session is
lost at once (every waiting publish fails with ``ConnectionLost``).

Resending was chosen over failing the waiting publishes with an "outcome unknown" error:
the duplicates are the same (a caller would retry those it is told may be lost), the
caller needs no retry code, and the cost on the publish path is a counter and a
reference per publish (``docs/delivery-guarantees.md``). What nats-py buffers while it
reconnects is not sent again: it goes out on the new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from common_events.transports.nats_connection import (
    Closed,
    Connected,
    Lost,
    NatsConnection,
    Reconnecting,
)
from common_events.transports.stan.publishing import PubAckPipeline

logger = logging.getLogger(__name__)

STALL_AFTER = 1.0
"""Seconds publishes may wait without any PubAck coming before the server is asked."""
PROBE_INTERVAL = 0.2
"""Seconds between two PINGs while the server does not answer."""


class RecoveryOwner(Protocol):
    """What the recovery needs from its session."""

    @property
    def client_id(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def connection(self) -> NatsConnection: ...

    async def probe(self) -> bool:
        """PING the server now: whether it answered. A server that no longer knows the
        client loses the session (``is_connected`` turns false)."""
        ...


class PublishRecovery:
    """Watches one session for outages and sends again what they may have lost."""

    def __init__(
        self,
        owner: RecoveryOwner,
        pipeline: PubAckPipeline,
        *,
        can_probe: bool,
        stall_after: float = STALL_AFTER,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self._owner = owner
        self._pipeline = pipeline
        self._can_probe = can_probe
        self._stall_after = stall_after
        self._probe_interval = probe_interval
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnects_seen = self._reconnects()
        self.recoveries = 0
        """Outages recovered from so far."""

    def start(self) -> None:
        name = self._owner.client_id
        self._tasks = [
            asyncio.create_task(self._watch_reconnects(), name=f"stan-reconnects-{name}"),
            asyncio.create_task(self._watch_stalls(), name=f"stan-stalls-{name}"),
        ]

    def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()

    def _reconnects(self) -> int:
        return int(self._owner.connection.client.stats.get("reconnects", 0))

    # -- what starts a recovery ----------------------------------------------------------

    async def _watch_reconnects(self) -> None:
        # Told at once by a connection this package opened; a connection the caller
        # owns never changes state here, and ``_watch_stalls`` notices its reconnects.
        connection = self._owner.connection
        with contextlib.suppress(asyncio.CancelledError):
            while self._owner.is_connected:
                state = await connection.wait_for_state(Reconnecting, Closed, Lost)
                if not isinstance(state, Reconnecting):
                    return
                # What nats-py buffers from now on goes out on the new connection.
                self._pipeline.suspect_sent()
                state = await connection.wait_for_state(Connected, Closed, Lost)
                if not isinstance(state, Connected):
                    return
                self._reconnects_seen = self._reconnects()
                await self._recover("a reconnect")

    async def _watch_stalls(self) -> None:
        pipeline = self._pipeline
        with contextlib.suppress(asyncio.CancelledError):
            while self._owner.is_connected:
                oldest = pipeline.oldest
                await asyncio.sleep(self._stall_after)
                reconnects = self._reconnects()
                if reconnects != self._reconnects_seen:
                    # A reconnect nobody reported (the caller's own connection): what
                    # was sent during it may have gone twice, better than not at all.
                    self._reconnects_seen = reconnects
                    pipeline.suspect_sent()
                    await self._recover("a reconnect")
                elif (
                    oldest is not None
                    and pipeline.oldest == oldest
                    and not self._lock.locked()
                ):
                    await self._recover(f"a publish waited {self._stall_after:g}s")

    # -- recovering ----------------------------------------------------------------------

    async def _recover(self, reason: str) -> None:
        async with self._lock:
            owner = self._owner
            pipeline = self._pipeline
            if self._can_probe:
                probes = 0
                while not await owner.probe():
                    if not owner.is_connected:
                        return
                    if probes == 0:
                        logger.info(
                            "client %r: the NATS Streaming server does not answer after "
                            "%s; asking again every %gs",
                            owner.client_id,
                            reason,
                            self._probe_interval,
                        )
                    probes += 1
                    # Whatever was sent meanwhile may have gone nowhere (no leader).
                    pipeline.suspect_sent()
                    await asyncio.sleep(self._probe_interval)
            if not owner.is_connected:
                return
            resent = await pipeline.resend_suspects()
            self.recoveries += 1
            if resent:
                logger.info(
                    "client %r: sent %d publish(es) again (same guid) after %s",
                    owner.client_id,
                    resent,
                    reason,
                )
