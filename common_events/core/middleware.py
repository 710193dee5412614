"""Middleware: code that runs around every publish and every handled delivery.

Tracing, metrics and whatever a service adds are middlewares on the bus; ``Publisher``
and ``Listener`` have no special case for any of them. Subclass ``Middleware`` and
override ``publish``, ``handle`` or both; the defaults pass through::

    class Timing(Middleware):
        async def handle(self, delivery: DeliveryContext, call_next: HandleNext) -> Outcome:
            outcome = await call_next(delivery)
            print(delivery.subject, outcome_label(outcome), delivery.handler_seconds)
            return outcome

    bus = await connect(url, middleware=[Tracing(), Timing()])
    # or: Bus(transport, middleware=[Tracing(), Timing()])

Order: the first middleware in the list is the outermost. It sees a publish first and
its confirmation last, and it enters a delivery first and leaves it last; the transport
(on publish) and the listener's own work (on handle) are innermost.

Publishing: ``publish(context, call_next)`` returns the broker's ``PublishAck``. Add
headers to ``context.headers`` before calling ``call_next`` (they travel where the
transport has headers, JetStream and memory; NATS Streaming has none and sends only the
payload). ``call_next`` raises what the publish raises (``PublishError``...). A
middleware that raises before ``call_next`` fails the publish, and nothing is sent; one
that raises after the broker confirmed is logged, and the publish still returns its
confirmation (the event is out: telling the caller otherwise would make it publish again).

Handling: ``handle(context, call_next)`` wraps everything the listener does with one
delivery: decode and validate, ``on_message``, and carrying out the outcome on the
broker (ack, negative ack, dead-letter publish). ``call_next`` never raises (only
``asyncio.CancelledError`` passes through): it returns the ``Outcome`` it carried out,
which names a handler's exception where there was one (``outcome_error``). A middleware
that raises never loses a message: raised before ``call_next``, the error is handled as
a handler failure (the delivery policy retries it, or dead-letters it on its last
allowed delivery) and the inner middlewares and the handler do not run; raised after,
the message was already settled, and the error is logged. Calling ``call_next`` twice
runs the delivery once (the second call returns the same outcome); not calling it leaves
the message unacknowledged, and it comes back after ``ack_wait``. Whatever a middleware
returns, ``Listener.handle_delivery`` returns the outcome it carried out.

A middleware object is shared by every publisher and listener of its bus and by
deliveries that run at once (a listener's ``concurrency``): keep per-call state in
locals or on the context, never on ``self``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from common_events.core.policy import (
    Acked,
    DeadLettered,
    LeftForRedelivery,
    NotAcked,
    NotSettled,
    Outcome,
    OutOfOrderLater,
    RetryLater,
)
from common_events.events.base import Event
from common_events.transports.base import PublishAck, TransportMessage

if TYPE_CHECKING:
    from common_events.core.listener import Listener

__all__ = [
    "DeliveryContext",
    "HandleNext",
    "Middleware",
    "PublishContext",
    "PublishNext",
    "outcome_error",
    "outcome_label",
]

logger = logging.getLogger(__name__)


class PublishContext:
    """One publish as a middleware sees it.

    ``subject`` and ``data`` (the wire payload) are what is sent; ``headers`` is a fresh
    dict a middleware may add to. ``event`` is the event when a ``Publisher`` sends one,
    and ``None`` for raw bytes published on the bus (dead-letter records, an outbox
    relay's rows).
    """

    __slots__ = ("_ack", "data", "event", "headers", "subject")

    def __init__(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None = None,
        event: Event | None = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self.headers: dict[str, str] = dict(headers) if headers else {}
        self.event = event
        self._ack: PublishAck | None = None

    def __repr__(self) -> str:
        return (
            f"PublishContext(subject={self.subject!r}, headers={sorted(self.headers)}, "
            f"event={type(self.event).__name__ if self.event is not None else None})"
        )


class DeliveryContext:
    """One delivery to a listener as a middleware sees it.

    What the broker delivered (``subject``, ``sequence``, ``delivery_count``,
    ``headers`` where the transport has them, the raw ``data``), which listener takes it
    (``listener``, ``listener_name``, ``queue_group``), and what the listener learned on
    the way: ``event`` once the payload validated (``None`` while it has not, or when it
    did not: then ``data`` is all there is) and ``handler_seconds``, how long
    ``on_message`` ran (``None`` when it did not run). The outcome is what ``call_next``
    returns.
    """

    __slots__ = (
        "_outcome",
        "event",
        "handler_seconds",
        "listener",
        "listener_name",
        "message",
        "queue_group",
    )

    def __init__(self, listener: Listener[Any], message: TransportMessage) -> None:
        self.listener = listener
        self.message = message
        """The transport's delivery, as the listener got it."""
        self.listener_name = type(listener).__name__
        self.queue_group: str | None = listener.queue_group
        self.event: Event | None = None
        self.handler_seconds: float | None = None
        self._outcome: Outcome | None = None

    @property
    def subject(self) -> str:
        return self.message.subject

    @property
    def data(self) -> bytes:
        """The payload exactly as it came off the wire."""
        return self.message.data

    @property
    def sequence(self) -> int:
        """The broker's sequence of the stored message (the same on every redelivery)."""
        return self.message.sequence

    @property
    def delivery_count(self) -> int:
        """1 on the first delivery, 2 on the first redelivery, and so on."""
        return self.message.delivery_count

    @property
    def headers(self) -> Mapping[str, str]:
        """Transport headers (JetStream, memory); empty on NATS Streaming."""
        return self.message.headers

    @property
    def log_fields(self) -> dict[str, object]:
        """The structured fields the listener puts on each log record of this delivery
        (``logger.info(..., extra=context.log_fields)``)."""
        return delivery_log_fields(self.listener_name, self.queue_group, self.message)

    def __repr__(self) -> str:
        return (
            f"DeliveryContext(listener={self.listener_name}, subject={self.subject!r}, "
            f"sequence={self.sequence}, delivery_count={self.delivery_count})"
        )


PublishNext = Callable[[PublishContext], Awaitable[PublishAck]]
"""What ``Middleware.publish`` calls to go on: the next middleware, then the transport."""

HandleNext = Callable[[DeliveryContext], Awaitable[Outcome]]
"""What ``Middleware.handle`` calls to go on: the next middleware, then the listener's
own work. Never raises; returns the outcome carried out."""


class Middleware:
    """Runs around publishing and handling; override either method, or both.

    The defaults pass through. See the module's documentation for the order and for
    what an error of a middleware does.
    """

    async def publish(self, context: PublishContext, call_next: PublishNext) -> PublishAck:
        """Around one publish; add headers to ``context.headers`` before ``call_next``."""
        return await call_next(context)

    async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
        """Around one delivery; ``call_next`` returns its outcome and never raises."""
        return await call_next(context)


def outcome_label(outcome: Outcome) -> str:
    """A short, fixed name for what became of a delivery, for metric labels and logs:
    ``acked``, ``not_acked``, ``retried``, ``out_of_order``, ``dead_lettered``,
    ``left_for_redelivery`` or ``not_settled``."""
    return _LABELS.get(type(outcome), "other")


def outcome_error(outcome: Outcome) -> Exception | None:
    """The exception behind an outcome, if there was one: what the handler (or a
    middleware) raised, the ``EventDecodeError`` of an invalid payload, or the broker's
    refusal to settle."""
    error = getattr(outcome, "error", None)
    return error if isinstance(error, Exception) else None


_LABELS: Mapping[type[Outcome], str] = {
    Acked: "acked",
    NotAcked: "not_acked",
    RetryLater: "retried",
    OutOfOrderLater: "out_of_order",
    DeadLettered: "dead_lettered",
    LeftForRedelivery: "left_for_redelivery",
    NotSettled: "not_settled",
}


def delivery_log_fields(
    listener_name: str, queue_group: str | None, message: TransportMessage
) -> dict[str, object]:
    """The ``extra`` of every log record about one delivery."""
    return {
        "subject": message.subject,
        "sequence": message.sequence,
        "delivery_count": message.delivery_count,
        "queue_group": queue_group,
        "listener": listener_name,
    }


# -- running the chains (used by the bus and the listener) ----------------------------

PublishTerminal = Callable[[PublishContext], Awaitable[PublishAck]]
HandleTerminal = Callable[[DeliveryContext, "Exception | None"], Awaitable[Outcome]]
"""The listener's own work; given an exception, it handles the delivery as if the
handler had raised it (a middleware failed before the handler ran)."""


def overrides(middleware: Middleware, name: str) -> bool:
    """Whether ``middleware`` does something in ``publish`` or ``handle``: a chain
    leaves out those that only pass through."""
    return getattr(type(middleware), name) is not getattr(Middleware, name)


def check_middleware(middleware: object) -> tuple[Middleware, ...]:
    """``middleware=`` as given to the bus, checked: a sequence of ``Middleware``."""
    if isinstance(middleware, Middleware) or not hasattr(middleware, "__iter__"):
        raise TypeError(
            "middleware= takes a list of Middleware objects, first is outermost: "
            "middleware=[Tracing(), Metrics()]"
        )
    items = tuple(middleware)
    for item in items:
        if not isinstance(item, Middleware):
            raise TypeError(
                f"middleware= takes Middleware objects (subclasses of "
                f"common_events.Middleware), not {type(item).__name__}"
            )
    return items


class PublishChain:
    """The publish middlewares of a bus around its transport's publish, built once."""

    __slots__ = ("_calls",)

    def __init__(self, middlewares: tuple[Middleware, ...], terminal: PublishTerminal) -> None:
        async def last(context: PublishContext) -> PublishAck:
            context._ack = await terminal(context)
            return context._ack

        calls: list[PublishNext] = [last]
        for middleware in reversed([m for m in middlewares if overrides(m, "publish")]):
            calls.append(_publish_layer(middleware, calls[-1]))
        self._calls = calls

    def __bool__(self) -> bool:
        """Whether any middleware of the chain does something on publish."""
        return len(self._calls) > 1

    async def __call__(self, context: PublishContext) -> PublishAck:
        return await self._calls[-1](context)


def _publish_layer(middleware: Middleware, call_next: PublishNext) -> PublishNext:
    name = type(middleware).__name__

    async def layer(context: PublishContext) -> PublishAck:
        try:
            return await middleware.publish(context, call_next)
        except Exception as error:
            if context._ack is None:
                raise
            logger.error(
                "middleware %s raised after %s was published (%s: %s); the publish stands",
                name,
                context.subject,
                type(error).__name__,
                error,
                exc_info=error,
            )
            return context._ack

    return layer


class HandleChain:
    """The handle middlewares of a bus around one listener's own work, built once."""

    __slots__ = ("_calls", "_terminal")

    def __init__(self, middlewares: tuple[Middleware, ...], terminal: HandleTerminal) -> None:
        self._terminal = terminal

        async def last(context: DeliveryContext) -> Outcome:
            return await self._run_terminal(context, None)

        calls: list[HandleNext] = [last]
        for middleware in reversed([m for m in middlewares if overrides(m, "handle")]):
            calls.append(self._layer(middleware, calls[-1]))
        self._calls = calls

    def __bool__(self) -> bool:
        """Whether any middleware of the chain does something on handle."""
        return len(self._calls) > 1

    async def __call__(self, context: DeliveryContext) -> Outcome:
        await self._calls[-1](context)
        outcome = context._outcome
        # Not called at all: nothing was settled, the message comes back after ack_wait.
        return outcome if outcome is not None else NotAcked()

    async def _run_terminal(self, context: DeliveryContext, error: Exception | None) -> Outcome:
        if context._outcome is None:
            context._outcome = await self._terminal(context, error)
        return context._outcome

    def _layer(self, middleware: Middleware, call_next: HandleNext) -> HandleNext:
        name = type(middleware).__name__

        async def layer(context: DeliveryContext) -> Outcome:
            try:
                return await middleware.handle(context, call_next)
            except Exception as error:
                fields = context.log_fields
                if context._outcome is not None:
                    logger.error(
                        "middleware %s raised after %s #%d was handled (%s: %s); the "
                        "outcome stands",
                        name,
                        context.subject,
                        context.sequence,
                        type(error).__name__,
                        error,
                        exc_info=error,
                        extra=fields,
                    )
                    return context._outcome
                logger.error(
                    "middleware %s raised on %s #%d (%s: %s); handled as a handler failure",
                    name,
                    context.subject,
                    context.sequence,
                    type(error).__name__,
                    error,
                    exc_info=error,
                    extra=fields,
                )
                return await self._run_terminal(context, error)

        return layer
