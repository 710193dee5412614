"""Prometheus metrics as a middleware (the ``prometheus`` extra: ``prometheus-client``).

``Metrics(registry)`` on a bus counts and times what the bus publishes and what its
listeners handle, in the registry it is given (no global state: pass
``prometheus_client.REGISTRY`` to use the default one)::

    common_events_published_messages_total{subject, outcome}
        publishes, by what the broker said: confirmed | duplicate | failed
    common_events_publish_duration_seconds{subject}
        from sending a message to the broker's confirmation (histogram)
    common_events_handled_deliveries_total{subject, queue_group, outcome}
        deliveries to listeners, by outcome: acked | retried | out_of_order |
        dead_lettered | not_acked | left_for_redelivery | not_settled
    common_events_handler_duration_seconds{subject, queue_group}
        how long ``on_message`` ran, for the deliveries where it ran (histogram)
    common_events_handlers_in_flight{subject, queue_group}
        deliveries being handled right now (gauge, read from the listeners when
        scraped: it costs a delivery nothing)

Label values are bounded: subjects (the events' and their dead-letter subjects), queue
groups, and the fixed outcome names above; never an event id or a sequence. A listener
without a queue group has ``queue_group=""``.

One ``Metrics`` per registry: to count on several buses of one process, pass the same
object to each.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import (  # type: ignore[import-not-found, unused-ignore]
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
    )
except ImportError as missing:
    raise ImportError(
        "common_events.observability.prometheus needs prometheus-client: "
        "pip install 'common-events[prometheus]'"
    ) from missing

from common_events.core.middleware import (
    DeliveryContext,
    HandleNext,
    Middleware,
    PublishContext,
    PublishNext,
    outcome_label,
)
from common_events.core.policy import Outcome
from common_events.transports.base import PublishAck

if TYPE_CHECKING:
    from common_events.core.listener import Listener

__all__ = ["DEFAULT_BUCKETS", "Metrics"]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)
"""Seconds: from a millisecond (an in-process publish, a quick handler) to a minute."""


class _Group:
    """The listeners of one (subject, queue group), whose running handlers the gauge
    reads when scraped (from the scraper's thread: the tuple is replaced, never changed)."""

    __slots__ = ("listeners",)

    def __init__(self) -> None:
        self.listeners: tuple[weakref.ref[Listener[Any]], ...] = ()

    def add(self, listener: Listener[Any]) -> None:
        self.listeners = (*self.listeners, weakref.ref(listener))

    def in_flight(self) -> float:
        return float(
            sum(listener.in_flight for ref in self.listeners if (listener := ref()) is not None)
        )


class _ListenerSeries:
    """One listener's labelled children, looked up once (label lookups cost more than
    the increments)."""

    __slots__ = ("duration", "labels", "outcomes")

    def __init__(self, metrics: Metrics, subject: str, queue_group: str) -> None:
        self.labels = (subject, queue_group)
        self.duration = metrics.handler_duration.labels(subject, queue_group)
        self.outcomes: dict[type[Outcome], Counter] = {}


class Metrics(Middleware):
    """Counters, histograms and a gauge of the bus's publishes and deliveries.

    ``namespace`` prefixes every name (``common_events_...``); ``buckets`` are the
    histograms' upper bounds in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        namespace: str = "common_events",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.registry = registry
        self.published = Counter(
            "published_messages",
            "Messages published, by the broker's answer: confirmed, duplicate or failed.",
            ["subject", "outcome"],
            namespace=namespace,
            registry=registry,
        )
        self.publish_duration = Histogram(
            "publish_duration_seconds",
            "Seconds from sending a message to the broker's confirmation.",
            ["subject"],
            namespace=namespace,
            registry=registry,
            buckets=tuple(buckets),
        )
        self.handled = Counter(
            "handled_deliveries",
            "Deliveries handled by listeners, by outcome.",
            ["subject", "queue_group", "outcome"],
            namespace=namespace,
            registry=registry,
        )
        self.handler_duration = Histogram(
            "handler_duration_seconds",
            "Seconds on_message ran, for deliveries where it ran.",
            ["subject", "queue_group"],
            namespace=namespace,
            registry=registry,
            buckets=tuple(buckets),
        )
        self.handlers_in_flight = Gauge(
            "handlers_in_flight",
            "Deliveries being handled right now.",
            ["subject", "queue_group"],
            namespace=namespace,
            registry=registry,
        )
        self._listener_series: weakref.WeakKeyDictionary[Listener[Any], _ListenerSeries] = (
            weakref.WeakKeyDictionary()
        )
        self._groups: dict[tuple[str, str], _Group] = {}

    async def publish(self, context: PublishContext, call_next: PublishNext) -> PublishAck:
        subject = context.subject
        started = time.perf_counter()
        try:
            ack = await call_next(context)
        except Exception:
            self.published.labels(subject, "failed").inc()
            raise
        self.publish_duration.labels(subject).observe(time.perf_counter() - started)
        self.published.labels(subject, "duplicate" if ack.duplicate else "confirmed").inc()
        return ack

    async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
        series = self._listener_series.get(context.listener)
        if series is None:
            series = self._add_listener(context)
        outcome = await call_next(context)
        if context.handler_seconds is not None:
            series.duration.observe(context.handler_seconds)
        counter = series.outcomes.get(type(outcome))
        if counter is None:
            counter = series.outcomes[type(outcome)] = self.handled.labels(
                *series.labels, outcome_label(outcome)
            )
        counter.inc()
        return outcome

    def _add_listener(self, context: DeliveryContext) -> _ListenerSeries:
        labels = (context.subject, context.queue_group or "")
        series = self._listener_series[context.listener] = _ListenerSeries(self, *labels)
        group = self._groups.get(labels)
        if group is None:
            group = self._groups[labels] = _Group()
            self.handlers_in_flight.labels(*labels).set_function(group.in_flight)
        group.add(context.listener)
        return series
