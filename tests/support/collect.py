"""``Collector`` moved to the package's conformance suite; tests import it from here."""

from common_events.testing.conformance import Collector

__all__ = ["Collector"]
