"""``Bridge``: both directions at once, started and stopped together, and ended by a
connection lost for good."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from common_events.core.codec import stream_subjects
from common_events.errors import ConnectionLost, TransportError
from common_events.migration.bridge.channel import Channel, DirectionStats
from common_events.migration.bridge.floors import Floors
from common_events.migration.bridge.intents import Ledger
from common_events.migration.bridge.options import BridgeOptions
from common_events.migration.bridge.to_jetstream import ForwardChannel
from common_events.migration.bridge.to_stan import ReverseChannel
from common_events.migration.defaults import default_monitor_url
from common_events.migration.jetstream_stream import EventStream
from common_events.transports import jetstream as jetstream_transport
from common_events.transports import stan as stan_transport
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.nats_connection import redact_url
from common_events.transports.stan import StanTransport

if TYPE_CHECKING:
    from common_events.migration.bridge.metrics import BridgeMetrics

logger = logging.getLogger(__name__)


class Bridge:
    """Runs both directions: ``await bridge.start()``, then ``await bridge.stop()``.

    ``run(stop)`` does both and drains on ``stop``; a connection lost for good (the STAN
    server forgot the client, or NATS is gone) ends it with ``ConnectionLost`` so its
    supervisor restarts it.

    ``metrics`` (``common_events.migration.bridge.metrics``, the ``prometheus`` extra)
    counts what each direction forwards, how late, and what fails on the way.
    """

    def __init__(self, options: BridgeOptions, *, metrics: BridgeMetrics | None = None) -> None:
        options.check()
        self.options = options
        self.metrics = metrics
        self.stan: StanTransport | None = None
        self.jetstream: JetStreamTransport | None = None
        self._stream: EventStream | None = None
        self._forward: list[ForwardChannel] = []
        self._reverse: list[ReverseChannel] = []
        self._lost: asyncio.Future[ConnectionLost] | None = None
        self.started = False
        self.draining = False

    @property
    def stats(self) -> dict[str, DirectionStats]:
        result = {f"{c.subject} -> JetStream": c.stats for c in self._forward}
        result.update({f"{c.subject} -> NATS Streaming": c.stats for c in self._reverse})
        return result

    def describe(self) -> str:
        parts = [f"{c.subject} -> JetStream" for c in self._forward]
        parts += [f"{c.subject} -> NATS Streaming" for c in self._reverse]
        return ", ".join(parts)

    async def start(self) -> None:
        options = self.options
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        stan_options = {"connect_timeout": 5.0, **options.stan_options}
        self.stan = await stan_transport.connect(
            options.stan_url,
            cluster_id=options.cluster_id,
            client_id=options.client_id,
            **stan_options,
        )
        self.stan.add_connection_lost_callback(self._on_lost)
        self.jetstream = await jetstream_transport.connect(
            options.jetstream_url,
            subjects=stream_subjects(),
            stream=options.stream,
            **options.jetstream_options,
        )
        self.jetstream.add_connection_lost_callback(self._on_lost)
        self._stream = EventStream(self.jetstream)
        for subject in options.to_jetstream:
            forward = ForwardChannel(self, subject)
            await forward.start()
            self._forward.append(forward)
        if options.to_stan:
            ledger = await Ledger.open(self.jetstream)
            floors = Floors(options.monitor_url or default_monitor_url(options.stan_url))
            await floors.refresh(required=True)
            floors.start()
            for subject in options.to_stan:
                reverse = ReverseChannel(self, subject, ledger, floors)
                await reverse.start()
                self._reverse.append(reverse)
        self.started = True
        logger.info(
            "bridge running between %s and %s: %s",
            redact_url(options.stan_url),
            redact_url(options.jetstream_url),
            self.describe(),
        )

    def _on_lost(self, error: ConnectionLost) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(error)

    async def run(self, stop: asyncio.Event) -> None:
        """Start, forward until ``stop`` is set or a connection is lost, then drain."""
        try:
            await self.start()
            assert self._lost is not None
            stopping = asyncio.ensure_future(stop.wait())
            waiters: set[asyncio.Future[Any]] = {stopping, self._lost}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
        finally:
            await self.stop()
        if self._lost is not None and self._lost.done():
            raise self._lost.result()

    async def stop(self) -> None:
        """Take no new message, wait up to ``drain_timeout`` for the ones in hand, then
        close the subscriptions (the durables stay) and both connections."""
        self.draining = True
        channels: list[Channel] = [*self._forward, *self._reverse]
        for channel in channels:
            channel.stopping = True
        try:
            async with asyncio.timeout(self.options.drain_timeout):
                await asyncio.gather(*(channel.idle.wait() for channel in channels))
        except TimeoutError:
            logger.warning("still forwarding after %gs; closing anyway", self.options.drain_timeout)
        for channel in channels:
            await channel.close()
        for reverse in self._reverse:
            reverse.floors.stop()
        for transport in (self.jetstream, self.stan):
            if transport is not None:
                with contextlib.suppress(TransportError):
                    await transport.close()
        logger.info("bridge stopped: %s", _stats_line(self.stats))


def _stats_line(stats: dict[str, DirectionStats]) -> str:
    return "; ".join(
        f"{name}: {s.forwarded} forwarded, {s.skipped} already there" for name, s in stats.items()
    )
