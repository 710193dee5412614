"""Seeing a service run: health probes, OpenTelemetry traces, Prometheus metrics.

Nothing here is imported by ``import common_events``, and nothing imports the optional
libraries before it is used: ``health`` needs only the standard library,
``common_events.observability.otel`` needs the ``otel`` extra and
``common_events.observability.prometheus`` the ``prometheus`` extra.
"""

from common_events.observability.health import HealthEndpoint

__all__ = ["HealthEndpoint"]
