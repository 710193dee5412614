"""Test support for services: the pytest plugin, ``deliver`` and Hypothesis strategies.

``common_events.testing.strategies`` needs Hypothesis (the ``testing`` extra); the rest
needs only the package.
"""

from common_events.testing.capture import PublishedEvents, memory_broker
from common_events.testing.delivery import Delivery, DeliveryOutcome, deliver

__all__ = [
    "Delivery",
    "DeliveryOutcome",
    "PublishedEvents",
    "deliver",
    "memory_broker",
]
