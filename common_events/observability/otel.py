"""OpenTelemetry traces as a middleware (the ``otel`` extra: ``opentelemetry-api``).

``Tracing()`` on a bus makes a producer span per publish and a consumer span per handled
delivery, named and attributed by the OpenTelemetry semantic conventions for messaging:

=====================================  ==============================================
span name                              ``publish <subject>`` / ``process <subject>``
span kind                              ``PRODUCER`` / ``CONSUMER``
``messaging.system``                   ``nats``
``messaging.operation.type``           ``send`` / ``process``
``messaging.operation.name``           ``publish`` / ``process``
``messaging.destination.name``         the subject (``ticket:created``)
``messaging.consumer.group.name``      the listener's queue group (consumer spans)
``messaging.message.id``               the broker's sequence of the stored message
                                       (on publish where the broker confirms one:
                                       JetStream and memory, not NATS Streaming)
``messaging.nats.message.delivery_count``  1 on the first delivery, 2 on the next...
``common_events.listener``             the listener's class name (consumer spans)
``common_events.outcome``              what became of the delivery: ``acked``,
                                       ``retried``, ``out_of_order``, ``dead_lettered``...
``error.type``                         on failure: the exception's class (as
                                       ``exception.type``), or the outcome
=====================================  ==============================================

A failed publish, and a delivery whose handler raised (or that was dead-lettered, or
could not be settled), records the exception on the span and sets its status to ERROR.

Trace context: on publish the middleware adds the propagator's headers (W3C
``traceparent``, and ``tracestate`` when there is one) to the message, and on delivery
the consumer span continues that trace as a child of the producer span, in whichever
process handles it. The payload is never touched. This works where the transport has
headers (JetStream, memory). NATS Streaming has none: there each consumer span starts a
trace of its own.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping

try:
    from opentelemetry import context as otel_context  # type: ignore[import-not-found, unused-ignore]
    from opentelemetry import propagate, trace  # type: ignore[import-not-found, unused-ignore]
    from opentelemetry.context import Context  # type: ignore[import-not-found, unused-ignore]
    from opentelemetry.propagators.textmap import (  # type: ignore[import-not-found, unused-ignore]
        TextMapPropagator,
    )
    from opentelemetry.trace import (  # type: ignore[import-not-found, unused-ignore]
        Span,
        SpanKind,
        Status,
        StatusCode,
        TracerProvider,
    )
except ImportError as missing:
    raise ImportError(
        "common_events.observability.otel needs opentelemetry-api: "
        "pip install 'common-events[otel]'"
    ) from missing

from common_events.core.middleware import (
    DeliveryContext,
    HandleNext,
    Middleware,
    PublishContext,
    PublishNext,
    outcome_error,
    outcome_label,
)
from common_events.core.policy import DeadLettered, Outcome
from common_events.transports.base import PublishAck

__all__ = ["Tracing"]

SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
CONSUMER_GROUP = "messaging.consumer.group.name"
MESSAGE_ID = "messaging.message.id"
DELIVERY_COUNT = "messaging.nats.message.delivery_count"
ERROR_TYPE = "error.type"
LISTENER = "common_events.listener"
OUTCOME = "common_events.outcome"

_EMPTY = Context()


def _version() -> str:
    try:
        return importlib.metadata.version("common-events")
    except importlib.metadata.PackageNotFoundError:
        return "0"


class Tracing(Middleware):
    """Spans for every publish and every handled delivery on the bus it is set on.

    ``tracer_provider`` defaults to the global one (``trace.set_tracer_provider``), and
    ``propagator`` to the global text-map propagator (W3C trace context and baggage
    unless ``OTEL_PROPAGATORS`` says otherwise), read on each call. ``system`` is the
    ``messaging.system`` attribute.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        system: str = "nats",
    ) -> None:
        self._tracer = trace.get_tracer(
            "common_events", _version(), tracer_provider=tracer_provider
        )
        self._propagator = propagator
        self.system = system
        self._statics: dict[tuple[str, ...], _Static] = {}
        # The header names the propagator reads, for the propagator they were read of.
        self._fields_of: TextMapPropagator | None = None
        self._fields: frozenset[str] = frozenset()

    def _textmap(self) -> TextMapPropagator:
        propagator: TextMapPropagator = (
            self._propagator if self._propagator is not None else propagate.get_global_textmap()
        )
        return propagator

    def _static(self, key: tuple[str, ...], make: Callable[[], _Static]) -> _Static:
        # Name and fixed attributes per subject (and listener): built once, copied per span.
        static = self._statics.get(key)
        if static is None:
            static = self._statics[key] = make()
        return static

    async def publish(self, context: PublishContext, call_next: PublishNext) -> PublishAck:
        subject = context.subject
        name, fixed = self._static(
            ("publish", subject),
            lambda: (
                f"publish {subject}",
                {
                    SYSTEM: self.system,
                    OPERATION_TYPE: "send",
                    OPERATION_NAME: "publish",
                    DESTINATION: subject,
                },
            ),
        )
        span = self._tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=fixed)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            # In the producer span's context: the consumer's span becomes its child.
            self._textmap().inject(context.headers)
            try:
                ack = await call_next(context)
            except Exception as error:
                _failed(span, error)
                raise
            if ack.sequence is not None:
                span.set_attribute(MESSAGE_ID, str(ack.sequence))
            return ack
        finally:
            otel_context.detach(token)
            span.end()

    async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
        propagator = self._textmap()
        if propagator is not self._fields_of:
            self._fields_of, self._fields = propagator, frozenset(propagator.fields)
        headers: Mapping[str, str] = context.headers
        # Never the ambient context: without trace headers a delivery starts a trace.
        parent = _EMPTY
        if headers and not self._fields.isdisjoint(headers):
            parent = propagator.extract(headers, context=_EMPTY)
        key = (context.subject, context.listener_name)
        static = self._statics.get(key)
        if static is None:
            static = self._statics[key] = _process_static(
                self.system, context.subject, context.queue_group, context.listener_name
            )
        name, fixed = static
        attributes = dict(fixed)
        attributes[MESSAGE_ID] = str(context.sequence)
        attributes[DELIVERY_COUNT] = context.delivery_count
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            outcome = await call_next(context)
            if span.is_recording():
                _record_outcome(span, outcome)
            return outcome
        finally:
            otel_context.detach(token)
            span.end()


_Static = tuple[str, dict[str, str | int]]


def _process_static(
    system: str, subject: str, queue_group: str | None, listener: str
) -> _Static:
    attributes: dict[str, str | int] = {
        SYSTEM: system,
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
        DESTINATION: subject,
        LISTENER: listener,
    }
    if queue_group:
        attributes[CONSUMER_GROUP] = queue_group
    return f"process {subject}", attributes


def _record_outcome(span: Span, outcome: Outcome) -> None:
    label = outcome_label(outcome)
    span.set_attribute(OUTCOME, label)
    error = outcome_error(outcome)
    if error is not None:
        _failed(span, error)
    elif isinstance(outcome, DeadLettered):
        span.set_attribute(ERROR_TYPE, label)
        span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {outcome.record.reason.value}"))


def _failed(span: Span, error: Exception) -> None:
    kind = type(error)
    span.record_exception(error)
    # Named as the SDK names exception.type: builtins without their module.
    module = kind.__module__
    qualified = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    span.set_attribute(ERROR_TYPE, qualified)
    span.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {error}"))
