"""Prometheus metrics of a bridge (the ``prometheus`` extra: ``prometheus-client``).

``Bridge(options, metrics=BridgeMetrics(registry))`` counts, in the registry it is given
(no global state, as ``common_events.observability.prometheus.Metrics``), per direction
(``to_jetstream``, ``to_stan``) and subject::

    common_events_bridged_messages_total{direction, subject, outcome}
        messages taken from one side, by what became of them: forwarded |
        already_there (a redelivery of one forwarded before, or, to STAN, a message
        that came from STAN)
    common_events_bridge_failures_total{direction, subject, step}
        steps that failed: publish (to the other side; tried again) | ack (on the side
        it came from; it comes back and is found there already) | ledger (to STAN
        only: the intent written first; tried again)
    common_events_bridge_lag_seconds{direction, subject}
        from a message's storing on the side it comes from to its confirmation on the
        other, for each message forwarded (histogram; the source server's clock against
        the bridge's)
    common_events_bridge_last_source_sequence{direction, subject}
        the sequence, on the side it comes from, of the last message the bridge is done
        with (gauge; from its start, where it resumes): to JetStream the channel's (its
        ``last_seq`` minus this is how many messages the bridge is behind), to STAN the
        stream's

Label values are bounded: the bridged subjects and the fixed names above. Every series
of a subject exists, at 0, from the bridge's start. ``common-events bridge
--health-port`` serves them at ``/metrics`` beside ``/livez`` and ``/readyz``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

try:
    from prometheus_client import (  # type: ignore[import-not-found, unused-ignore]
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
    )
except ImportError as missing:
    raise ImportError(
        "the bridge's metrics need prometheus-client: pip install 'common-events[prometheus]'"
    ) from missing

__all__ = ["DIRECTIONS", "BridgeMetrics", "ChannelSeries"]

DIRECTIONS = ("to_jetstream", "to_stan")
_STEPS = {"to_jetstream": ("publish", "ack"), "to_stan": ("ledger", "publish", "ack")}

LAG_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
"""Seconds: from a millisecond (keeping up) to an hour (a backlog after an outage)."""


class ChannelSeries:
    """One direction of one subject: its labelled children, looked up once."""

    __slots__ = ("_already_there", "_failures", "_forwarded", "_lag", "_last_sequence")

    def __init__(self, metrics: BridgeMetrics, direction: str, subject: str) -> None:
        labels = (direction, subject)
        self._forwarded = metrics.bridged.labels(*labels, "forwarded")
        self._already_there = metrics.bridged.labels(*labels, "already_there")
        self._failures = {
            step: metrics.failures.labels(*labels, step) for step in _STEPS[direction]
        }
        self._lag = metrics.lag.labels(*labels)
        self._last_sequence = metrics.last_source_sequence.labels(*labels)

    def resumes_after(self, sequence: int) -> None:
        """At the start: the last message done with before (0: none)."""
        self._last_sequence.set(sequence)

    def forwarded(self, sequence: int, stored_at: float) -> None:
        """Confirmed on the other side; ``stored_at`` is when (Unix seconds) the side
        it came from stored it."""
        self._forwarded.inc()
        self._lag.observe(max(0.0, time.time() - stored_at))
        self._last_sequence.set(sequence)

    def already_there(self, sequence: int) -> None:
        self._already_there.inc()
        self._last_sequence.set(sequence)

    def failed(self, step: str) -> None:
        self._failures[step].inc()


class BridgeMetrics:
    """What a bridge has forwarded, how late, and what failed on the way.

    ``namespace`` prefixes every name (``common_events_...``); ``buckets`` are the lag
    histogram's upper bounds in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        namespace: str = "common_events",
        buckets: Sequence[float] = LAG_BUCKETS,
    ) -> None:
        self.registry = registry
        self.bridged = Counter(
            "bridged_messages",
            "Messages the bridge took from one side: forwarded, or already_there.",
            ["direction", "subject", "outcome"],
            namespace=namespace,
            registry=registry,
        )
        self.failures = Counter(
            "bridge_failures",
            "Steps of the bridge that failed: publish, ack or ledger.",
            ["direction", "subject", "step"],
            namespace=namespace,
            registry=registry,
        )
        self.lag = Histogram(
            "bridge_lag_seconds",
            "Seconds from a message's storing on one side to its confirmation on the other.",
            ["direction", "subject"],
            namespace=namespace,
            registry=registry,
            buckets=tuple(buckets),
        )
        self.last_source_sequence = Gauge(
            "bridge_last_source_sequence",
            "Sequence, on the side it comes from, of the last message the bridge is done with.",
            ["direction", "subject"],
            namespace=namespace,
            registry=registry,
        )

    def channel(self, direction: str, subject: str) -> ChannelSeries:
        """The series of one direction of one subject, all of them at 0 from now on."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction is one of {DIRECTIONS}, not {direction!r}")
        return ChannelSeries(self, direction, subject)
