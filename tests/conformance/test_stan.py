"""The exported conformance suite on a real nats-streaming-server, fresh per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common_events.core.bus import Bus, connect
from common_events.testing.conformance import Conformance, Features, TransportFactory
from common_events.testing.servers import StanServer
from common_events.transports.base import Transport


class TestStanConformance(Conformance):
    # NATS Streaming has no negative ack, no in-progress ack and no headers.
    features = Features(
        negative_ack=False, headers=False, in_progress=False, immediate_publish=True
    )

    @pytest.fixture
    async def transport_factory(self, stan_server: StanServer) -> AsyncIterator[TransportFactory]:
        buses: list[Bus] = []

        async def make() -> Transport:
            bus = await connect(stan_server.url, cluster_id=stan_server.cluster_id)
            buses.append(bus)
            return bus.transport

        yield make
        for bus in buses:
            await bus.close()
