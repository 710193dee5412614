"""The conformance suite every transport passes, exported for transports written
anywhere (the idea of Watermill's ``pubsub/tests``: one suite, a ``Features``
description per backend).

A transport author subclasses the suite as a pytest test class, says what the backend
can do, and gives it a factory of connected transports on one fresh broker::

    from common_events.testing.conformance import Conformance, Features

    class TestMyTransport(Conformance):
        features = Features(negative_ack=True, headers=True)

        @pytest_asyncio.fixture
        async def transport_factory(self) -> AsyncIterator[TransportFactory]:
            ...

``Conformance`` is the whole suite; ``TransportConformance`` (the ``Transport``
interface alone) and ``ListenerConformance`` (the core's ``Listener`` on it) are its two
halves. Tests of a feature the backend lacks are skipped with the reason. Needs pytest
and pytest-asyncio (the ``testing`` extra). See ``docs/conformance.md``.
"""

from common_events.testing.conformance.collect import Collector, TransportFactory
from common_events.testing.conformance.features import FeatureGate, Features, requires
from common_events.testing.conformance.listener import ListenerConformance
from common_events.testing.conformance.transport import TransportConformance

__all__ = [
    "Collector",
    "Conformance",
    "FeatureGate",
    "Features",
    "ListenerConformance",
    "TransportConformance",
    "TransportFactory",
    "requires",
]


class Conformance(TransportConformance, ListenerConformance):
    """The whole suite: ``TransportConformance`` and ``ListenerConformance``."""
