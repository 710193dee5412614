"""The exported conformance suite on the in-process broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common_events.testing.conformance import Conformance, Features, TransportFactory
from common_events.transports.base import Transport
from common_events.transports.memory import MemoryBroker, MemoryTransport


class TestMemoryConformance(Conformance):
    features = Features(
        negative_ack=True, headers=True, in_progress=True, immediate_publish=True
    )

    @pytest.fixture
    async def transport_factory(self) -> AsyncIterator[TransportFactory]:
        broker = MemoryBroker()
        made: list[Transport] = []

        async def make() -> Transport:
            transport = MemoryTransport(broker)
            made.append(transport)
            return transport

        yield make
        for transport in made:
            await transport.close()
