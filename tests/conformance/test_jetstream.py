"""The exported conformance suite on a real nats-server with JetStream, fresh per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common_events.core.bus import Bus, connect
from common_events.testing.conformance import Conformance, Features, TransportFactory
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.base import Transport


class TestJetStreamConformance(Conformance):
    features = Features(negative_ack=True, headers=True, in_progress=True)

    @pytest.fixture
    async def transport_factory(
        self, nats_server: EmbeddedNatsServer
    ) -> AsyncIterator[TransportFactory]:
        # Through the core's connect(), which hands the transport the stream's subjects.
        buses: list[Bus] = []

        async def make() -> Transport:
            bus = await connect(nats_server.url)
            buses.append(bus)
            return bus.transport

        yield make
        for bus in buses:
            await bus.close()
