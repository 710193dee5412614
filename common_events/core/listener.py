"""``Listener[E]``: receives one kind of event, with the reference services' defaults.

The one place that joins the transports (bytes) and the events (models): decode and
validate once at the boundary, run the handler, and carry out the outcome the failure
policy (``core/policy.py``) gives: ack, retry after a delay, or dead-letter.

One piece of over 400 lines on purpose: it is one class, and its delivery path is kept
in line in one coroutine because every call and await there is paid on every delivery
(``docs/benchmarks.md``). What can live apart does: the settings' checks
(``_listener_settings.py``), the policy, the codec and the middleware chain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from pydantic import ValidationError

from common_events.core._event_binding import bound_event_type, check_declared_subject
from common_events.core._listener_settings import check_on_message, check_settings
from common_events.core._renamed import renamed_option
from common_events.core.bus import Bus
from common_events.core.codec import dead_letter_message, decode_error
from common_events.core.message import Message
from common_events.core.middleware import (
    DeliveryContext,
    HandleChain,
    delivery_log_fields,
    outcome_label,
)
from common_events.core.policy import (
    ACKED,
    Acked,
    DeadLettered,
    DeliveryAttempt,
    FailurePolicy,
    HandlerResult,
    LeftForRedelivery,
    NotSettled,
    Outcome,
    OutOfOrderLater,
    RetryLater,
)
from common_events.errors import ConfigurationError, ListenerDefinitionError, OutOfOrder
from common_events.events.base import Event
from common_events.events.subjects import Subjects
from common_events.transports.base import (
    MessageHandler,
    ParkableMessage,
    SubscriptionOptions,
    TransportMessage,
    TransportSubscription,
)

E = TypeVar("E", bound=Event)

logger = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT = 10.0
"""Seconds ``close()`` and ``unsubscribe()`` wait for running handlers by default."""


class Listener(ABC, Generic[E]):
    """Listens to events of type ``E``; subclass it and write ``on_message``.

    ::

        class TicketCreatedListener(Listener[TicketCreatedEvent]):
            queue_group = "orders-service"

            async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
                ...
                await msg.ack()

        await TicketCreatedListener(bus).listen()

    Every setting below is a class attribute a subclass may override.
    """

    event_type: ClassVar[type[Event]]
    subject: ClassVar[Subjects]

    queue_group: ClassVar[str]
    """Required. Members of one queue group (the instances of one service) split the
    messages; each message goes to one of them."""

    durable: ClassVar[bool] = True
    """Keep the subscription's position while no member runs, so nothing is missed."""

    durable_name: ClassVar[str | None] = None
    """The durable subscription's name; ``None`` means the queue group's name."""

    deliver_all_available: ClassVar[bool] = True
    """A new subscription starts at the first stored message, not only new ones."""

    ack_wait: ClassVar[float] = 5.0
    """Seconds before an unacknowledged message is delivered again.

    A handler may take longer: while it runs, the listener tells the broker every
    ``ack_wait / 3`` that it is still working (memory; JetStream's in-progress ack), so
    its message is not delivered again meanwhile. NATS Streaming cannot be told: there a
    handler that outlasts ``ack_wait`` sees its message delivered again while it runs
    (the listener warns once), so set ``ack_wait`` above the longest a handler takes."""

    max_in_flight: ClassVar[int] = 16
    """At most this many delivered, unacknowledged messages per listener. This bounds
    what the broker hands over, not how many handlers run: see ``concurrency``."""

    max_deliveries: ClassVar[int] = 10
    """A message whose handler failed (or raised ``OutOfOrder``) on this many deliveries
    goes to the dead-letter subject instead of being retried again."""

    retry_delay: ClassVar[float] = 0.2
    """Seconds before the first retry of a failed handler where the transport can ask
    for one (memory, JetStream); doubles with each delivery, capped at ``ack_wait``.
    Over NATS Streaming a retry always waits ``ack_wait``."""

    concurrency: ClassVar[int] = 1
    """Handlers of this listener that may run at once, at most ``max_in_flight``.

    With 1 (the default) messages are handled one after another, in the order the broker
    delivers them. With more, up to this many handlers run at once and may finish in any
    order, so a newer version of an entity can reach its handler before an older one:
    keep the version check of optimistic concurrency (raise ``OutOfOrder``), which makes
    the early one come back later."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_on_message(cls, Listener.on_message)
        check_settings(cls)
        event = bound_event_type(cls, Listener)
        if event is None:
            return
        check_declared_subject(cls, event)
        queue_group = getattr(cls, "queue_group", None)
        if not isinstance(queue_group, str) or not queue_group:
            raise ListenerDefinitionError(
                f"{cls.__name__} (listening to {event.subject.value!r} with "
                f"{event.__name__}) has no queue_group; set queue_group = "
                "'<service-name>' so the service's instances split the work"
            )

    def __init__(self, bus: Bus) -> None:
        if not hasattr(type(self), "event_type"):
            raise TypeError(
                f"{type(self).__name__} is generic; subclass it with an event type, "
                "e.g. class TicketCreatedListener(Listener[TicketCreatedEvent])"
            )
        self.bus = bus
        self._subscription: TransportSubscription | None = None
        self._paused = False
        self._in_flight = 0
        # Set by wait_idle while deliveries run; the delivery path only checks it.
        self._idle_waiter: asyncio.Future[None] | None = None
        # concurrency > 1: deliveries run in tasks of their own, at most `concurrency`.
        self._workers: set[asyncio.Task[Outcome]] = set()
        self._slots = asyncio.Semaphore(self.concurrency)
        self.logger = logger.getChild(type(self).__name__)
        # Read once: the settings are class attributes.
        self._policy = self.failure_policy
        # codec.decode_event without its frame: this runs on every delivery.
        self._validate_json: Callable[[bytes], E] = (
            self.event_type.__pydantic_validator__.validate_json
        )
        # FailurePolicy's own arrival check, done in line (every delivery asks it); a
        # policy that overrides it is asked.
        self._arrival_bound: int | None = (
            self._policy.max_deliveries
            if type(self._policy).decides_on_arrival is FailurePolicy.decides_on_arrival
            else None
        )
        chain = HandleChain(bus.middleware, self._handle_in_context)
        self._handle_chain = chain if chain else None
        # What the subscription calls for each delivery: handle_delivery, or, without
        # middlewares and where a subclass did not override it, the listener's own work
        # straight away (one coroutine less).
        self._deliver: Callable[[TransportMessage], Awaitable[Outcome]] = (
            self._process
            if self._handle_chain is None
            and type(self).handle_delivery is Listener.handle_delivery
            else self.handle_delivery
        )
        # Deliveries whose handler runs now, for the in-progress heartbeat.
        self._running: set[Message] = set()
        """Read by the heartbeat; ``Message._started`` is when each one arrived."""
        self._heartbeat: asyncio.Task[None] | None = None
        self._outlasted_ack_wait = False

    # -- the part a service writes ---------------------------------------------------

    @abstractmethod
    async def on_message(self, event: E, msg: Message) -> None:
        """Handle one event; ``await msg.ack()`` when done.

        Raise ``OutOfOrder`` when the event cannot be applied yet (version N before
        N-1); raise anything else to have it retried. Either way it comes back later,
        and past ``max_deliveries`` it goes to the dead-letter subject.
        """

    # -- settings as the transport sees them -----------------------------------------

    @property
    def subscription_options(self) -> SubscriptionOptions:
        durable_name = (self.durable_name or self.queue_group) if self.durable else None
        return SubscriptionOptions(
            queue_group=self.queue_group,
            durable_name=durable_name,
            deliver_all_available=self.deliver_all_available,
            ack_wait=self.ack_wait,
            max_in_flight=self.max_in_flight,
            max_deliveries=self.max_deliveries,
        )

    @property
    def failure_policy(self) -> FailurePolicy:
        """This listener's settings as the failure policy reads them."""
        return FailurePolicy(
            queue_group=self.queue_group,
            max_deliveries=self.max_deliveries,
            retry_delay=self.retry_delay,
            ack_wait=self.ack_wait,
        )

    def next_retry_delay(self, delivery_count: int) -> float:
        """Seconds to wait before delivery ``delivery_count + 1`` after a failure."""
        return self.failure_policy.retry_delay_after(delivery_count)

    # -- life cycle ------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._subscription is not None

    @property
    def in_flight(self) -> int:
        """Handlers running right now."""
        return self._in_flight

    async def listen(self) -> Self:
        """Subscribe and start handling messages; returns the listener."""
        if self._subscription is not None:
            raise ConfigurationError(f"{type(self).__name__} is already listening")
        self._paused = False
        options = self.subscription_options
        # One delivery at a time: the transport awaits the delivery itself.
        handler = (
            cast(MessageHandler, self._deliver) if self.concurrency == 1 else self._start_worker
        )
        self._subscription = await self.bus.subscribe(self.subject.value, handler, options)
        self.logger.info(
            "listening to %s (queue group %r, durable %r, concurrency %d)",
            self.subject.value,
            options.queue_group,
            options.durable_name,
            self.concurrency,
        )
        return self

    def pause(self) -> None:
        """Stop taking new messages; what arrives is left unacknowledged for later."""
        self._paused = True

    async def wait_idle(self) -> None:
        """Wait until no handler runs."""
        while True:
            while self._in_flight:
                waiter = self._idle_waiter
                if waiter is None or waiter.done():
                    waiter = self._idle_waiter = asyncio.get_running_loop().create_future()
                await asyncio.shield(waiter)
            if not self._workers:
                return
            await asyncio.wait(set(self._workers))

    async def close(
        self, drain_timeout: float | None = None, *, grace: float | None = None
    ) -> None:
        """Drain, then close the subscription; a durable survives and resumes later.

        Draining takes no new messages and waits up to ``drain_timeout`` seconds
        (default 10) for the running handlers. A handler still running then is abandoned:
        its message is not acknowledged and comes back after ``ack_wait``. ``grace`` is
        the deprecated old name of ``drain_timeout``.
        """
        await self._leave(_drain_timeout(drain_timeout, grace), remove_durable=False)

    async def unsubscribe(
        self, drain_timeout: float | None = None, *, grace: float | None = None
    ) -> None:
        """Like ``close()``, but the broker forgets the durable subscription."""
        await self._leave(_drain_timeout(drain_timeout, grace), remove_durable=True)

    async def _leave(self, drain_timeout: float, *, remove_durable: bool) -> None:
        self.pause()
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        # The one drain: the transport's close() does not wait for handlers again.
        try:
            async with asyncio.timeout(drain_timeout):
                await self.wait_idle()
        except TimeoutError:
            self.logger.warning(
                "%d handler(s) still running after %.1fs; closing anyway, their messages "
                "will be redelivered",
                self._in_flight,
                drain_timeout,
            )
            # Abandoned, as the transports abandon the handler they run themselves.
            for worker in self._workers:
                worker.cancel()
        # An abandoned handler's message is no longer held back: it comes back.
        self._running.clear()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if remove_durable:
            await subscription.unsubscribe()
        else:
            await subscription.close()
        self.logger.info("stopped listening to %s", self.subject.value)

    # -- delivery --------------------------------------------------------------------

    async def _start_worker(self, raw: TransportMessage) -> None:
        # The transport awaits this before it hands over the next message: while
        # `concurrency` handlers run, it waits here, and the broker holds the rest back
        # (at most max_in_flight delivered, unacknowledged).
        await self._slots.acquire()
        worker = asyncio.get_running_loop().create_task(self.handle_delivery(raw))
        self._workers.add(worker)
        worker.add_done_callback(self._worker_done)

    def _worker_done(self, worker: asyncio.Task[Outcome]) -> None:
        self._workers.discard(worker)
        self._slots.release()

    async def handle_delivery(self, raw: TransportMessage) -> Outcome:
        """Run one delivery through the listener and return what became of it.

        Decode and validate, run ``on_message``, then carry out the failure policy's
        outcome (ack, negative ack with a delay, or dead-letter record then ack). Never
        raises: a handler error is part of the outcome, and a broker error while
        settling gives ``NotSettled`` (the message comes back later). The bus's
        middlewares run around all of it. Its subscription calls this for every
        message; test tools call it to hand over one themselves.
        """
        chain = self._handle_chain
        if chain is None:
            return await self._process(raw, None, None)
        try:
            context = DeliveryContext(self, raw)
        except Exception as error:
            return self._not_processed(raw, error)
        return await chain(context)

    async def _handle_in_context(
        self, context: DeliveryContext, failure: Exception | None
    ) -> Outcome:
        return await self._process(context.message, context, failure)

    async def _process(
        self,
        raw: TransportMessage,
        context: DeliveryContext | None = None,
        failure: Exception | None = None,
    ) -> Outcome:
        """The listener's own work on one delivery. ``failure``: a middleware raised it
        before the handler ran, and it counts as the handler's."""
        try:
            policy = self._policy
            attempt: DeliveryAttempt | None = None
            arrival: Outcome | None = None
            bound = self._arrival_bound
            if (
                (self._paused or raw.delivery_count > bound)
                if bound is not None
                else policy.decides_on_arrival(raw.delivery_count, paused=self._paused)
            ):
                attempt = self._attempt(raw)
                arrival = policy.on_arrival(attempt, paused=self._paused, now=datetime.now(UTC))
        except Exception as error:
            return self._not_processed(raw, error)
        debug = self.logger.isEnabledFor(logging.DEBUG)
        if isinstance(arrival, LeftForRedelivery):
            # Shutting down: it comes back to another member or to the next start.
            if debug:
                self._debug_line(raw, "left for redelivery: the listener is pausing")
            return arrival
        if debug:
            self._debug_line(raw, "received")
        self._in_flight += 1
        # The message handed to the handler doubles as the heartbeat's record.
        msg = Message(raw)
        msg._started = time.monotonic()
        self._running.add(msg)
        handler_seconds: float | None = None
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._keep_alive())
        try:
            try:
                if arrival is not None:
                    outcome = arrival
                elif failure is not None:
                    # A middleware raised before the handler ran (and logged it): the
                    # handler's failure as far as the policy goes, so the message is
                    # retried or dead-lettered, never lost.
                    outcome = policy.on_handled(
                        attempt or self._attempt(raw),
                        HandlerResult(False, failure),
                        now=datetime.now(UTC),
                    )
                else:
                    # Decode, run the handler, and ask the policy what becomes of it (in
                    # line rather than in a coroutine of its own: this runs for every
                    # delivery).
                    try:
                        event = self._validate_json(raw.data)
                    except ValidationError as error:
                        event = None
                        outcome = policy.on_undecodable(
                            attempt or self._attempt(raw),
                            decode_error(self.event_type, error),
                            now=datetime.now(UTC),
                        )
                    if event is not None:
                        if context is not None:
                            context.event = event
                        # Timed only for whoever reads it (middlewares, the debug line).
                        timed = context is not None or debug
                        started = time.perf_counter() if timed else 0.0
                        result: HandlerResult | None
                        try:
                            await self.on_message(event, msg)
                        except Exception as error:
                            # The one place a handler error is caught: the transports
                            # never see one.
                            result = HandlerResult(msg.acked, error)
                        else:
                            # Acknowledged and returned, the common case: on_handled
                            # would say ACKED.
                            result = None if msg._acked else HandlerResult(False)
                        if timed:
                            handler_seconds = time.perf_counter() - started
                            if context is not None:
                                context.handler_seconds = handler_seconds
                        if result is None:
                            outcome = ACKED
                        else:
                            outcome = policy.on_handled(
                                attempt or self._attempt(raw), result, now=datetime.now(UTC)
                            )
                            if result.error is not None:
                                self._log_handler_error(raw, outcome, result.error)
            except Exception as error:
                return self._not_processed(raw, error)
            if outcome is not ACKED:  # acknowledged by the handler: nothing left to do
                outcome = await self._settle(raw, outcome)
            if debug:
                self._debug_line(raw, outcome_label(outcome), handler_seconds)
            return outcome
        finally:
            self._running.discard(msg)
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle_waiter is not None:
                waiter, self._idle_waiter = self._idle_waiter, None
                if not waiter.done():
                    waiter.set_result(None)

    @staticmethod
    def _attempt(raw: TransportMessage) -> DeliveryAttempt:
        return DeliveryAttempt(raw.subject, raw.sequence, raw.delivery_count, raw.data)

    def _log_fields(self, raw: TransportMessage) -> dict[str, object]:
        """The ``extra`` of every log record of a delivery, for JSON log formatters."""
        return delivery_log_fields(type(self).__name__, self.queue_group, raw)

    def _debug_line(
        self, raw: TransportMessage, what: str, handler_seconds: float | None = None
    ) -> None:
        took = "" if handler_seconds is None else f" (handler {handler_seconds * 1000:.1f} ms)"
        self.logger.debug(
            "%s #%d delivery %d: %s%s",
            raw.subject,
            raw.sequence,
            raw.delivery_count,
            what,
            took,
            extra=self._log_fields(raw),
        )

    def _not_processed(self, raw: TransportMessage, error: Exception) -> NotSettled:
        # A bug of the listener's own, not of the handler: keep the listener alive; the
        # message comes back after ack_wait.
        self.logger.error(
            "could not process %s #%d (%s: %s); it comes back after ack_wait",
            raw.subject,
            raw.sequence,
            type(error).__name__,
            error,
            exc_info=error,
            extra=self._log_fields(raw),
        )
        return NotSettled(None, error)

    def _log_handler_error(self, raw: TransportMessage, outcome: Outcome, error: Exception) -> None:
        """One record per failure; its first line names the exception and what follows."""
        fields = self._log_fields(raw)
        where = (
            f"{raw.subject} #{raw.sequence} (delivery {raw.delivery_count} of at most "
            f"{self.max_deliveries})"
        )
        raised = f"{type(error).__name__}: {error}"
        if isinstance(outcome, OutOfOrderLater):
            # Expected under optimistic concurrency: not an error.
            self.logger.info(
                "%s is out of order (%s); delivered again in %gs",
                where,
                error,
                outcome.delay,
                extra=fields,
            )
        elif isinstance(outcome, RetryLater):
            self.logger.error(
                "%s: handler raised %s; retrying in %gs",
                where,
                raised,
                outcome.delay,
                exc_info=error,
                extra=fields,
            )
        elif isinstance(outcome, DeadLettered) and isinstance(error, OutOfOrder):
            self.logger.warning(
                "%s is still out of order (%s); no deliveries left, it goes to %s",
                where,
                error,
                outcome.subject,
                extra=fields,
            )
        elif isinstance(outcome, DeadLettered):
            self.logger.error(
                "%s: handler raised %s; no deliveries left, it goes to %s",
                where,
                raised,
                outcome.subject,
                exc_info=error,
                extra=fields,
            )
        elif isinstance(outcome, Acked):
            self.logger.error(
                "%s: handler raised %s after acknowledging; not retried",
                where,
                raised,
                exc_info=error,
                extra=fields,
            )
        else:
            self.logger.error("%s: handler raised %s", where, raised, exc_info=error, extra=fields)

    # -- slow handlers ---------------------------------------------------------------

    async def _keep_alive(self) -> None:
        """While handlers run: every ``ack_wait / 3``, tell the broker that those running
        that long already are still working, so it does not deliver their message again
        (memory, JetStream). Where it cannot be told (NATS Streaming), warn once per
        listener when a handler outlasts ``ack_wait``."""
        period = self.ack_wait / 3
        try:
            while self._running:
                await asyncio.sleep(period)
                now = time.monotonic()
                for running in list(self._running):
                    if now - running._started >= period and running in self._running:
                        await self._still_working(running, now)
        finally:
            if self._heartbeat is asyncio.current_task():
                self._heartbeat = None

    async def _still_working(self, running: Message, now: float) -> None:
        if running.acked:
            return
        raw = running._raw
        in_progress = getattr(raw, "in_progress", None)
        held = False
        if in_progress is not None:
            try:
                held = bool(await in_progress())
            except Exception as error:
                self.logger.debug(
                    "could not tell the broker that %s #%d is still being handled (%s: %s)",
                    raw.subject,
                    raw.sequence,
                    type(error).__name__,
                    error,
                    extra=self._log_fields(raw),
                )
        ran = now - running._started
        if held or ran < self.ack_wait or self._outlasted_ack_wait:
            return
        self._outlasted_ack_wait = True
        name = type(self).__name__
        self.logger.warning(
            "%s #%d: the handler of %s has run %.1fs, longer than ack_wait = %gs, and the "
            "broker cannot be told it is still working (NATS Streaming has no in-progress "
            "ack): it delivers the message again meanwhile. Raise %s.ack_wait above the "
            "longest a handler takes (said once per listener)",
            raw.subject,
            raw.sequence,
            name,
            ran,
            self.ack_wait,
            name,
            extra=self._log_fields(raw),
        )

    async def _settle(self, raw: TransportMessage, outcome: Outcome) -> Outcome:
        """Carry ``outcome`` out on the broker."""
        try:
            if isinstance(outcome, RetryLater | OutOfOrderLater):
                await raw.nak(outcome.delay)
            elif isinstance(outcome, DeadLettered):
                transport = self.bus.transport
                try:
                    # The codec picks the form that fits the server's maximum payload.
                    # (getattr: a transport written before these properties still works,
                    # as one without a known limit and without headers.)
                    message = dead_letter_message(
                        outcome.record,
                        max_payload=getattr(transport, "max_payload", None),
                        headers=bool(getattr(transport, "carries_headers", False)),
                    )
                    # Published before the ack: if this fails, the message is not
                    # acknowledged and comes back, so nothing is lost.
                    await self.bus.publish(outcome.subject, message.data, message.headers)
                except Exception as error:
                    not_settled = self.failure_policy.on_dead_letter_failed(outcome, error)
                    self.logger.error(
                        "could not send %s #%d to %s (%s: %s); left unacknowledged, it "
                        "comes back in %gs (after ack_wait where the broker has no "
                        "negative ack) to try again",
                        raw.subject,
                        raw.sequence,
                        outcome.subject,
                        type(error).__name__,
                        error,
                        not_settled.redelivery_delay,
                        exc_info=error,
                        extra=self._log_fields(raw),
                    )
                    # Handed back with a long delay rather than acknowledged: a message
                    # is never acknowledged before its record is stored. Parked where the
                    # broker can, so that it holds no slot of the window meanwhile.
                    try:
                        if isinstance(raw, ParkableMessage):
                            await raw.park(not_settled.redelivery_delay or 0.0)
                        else:
                            await raw.nak(not_settled.redelivery_delay)
                    except Exception as refused:
                        self.logger.warning(
                            "could not hand %s #%d back either (%s); it comes back after "
                            "ack_wait",
                            raw.subject,
                            raw.sequence,
                            refused,
                            extra=self._log_fields(raw),
                        )
                    return not_settled
                await raw.ack()
                outcome = dataclasses.replace(outcome, published=message)
                self.logger.warning(
                    "%s #%d sent to %s (%s): %s: %s",
                    raw.subject,
                    raw.sequence,
                    outcome.subject,
                    message.form.value,
                    outcome.record.reason.value,
                    _first_line(outcome.record.error),
                    extra=self._log_fields(raw),
                )
        except Exception as error:
            self.logger.error(
                "could not settle %s #%d (%s: %s); it will be delivered again",
                raw.subject,
                raw.sequence,
                type(error).__name__,
                error,
                exc_info=error,
                extra=self._log_fields(raw),
            )
            return NotSettled(outcome, error)
        return outcome


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def _drain_timeout(drain_timeout: float | None, grace: float | None) -> float:
    # stacklevel 4: the warning names the line that called close() or unsubscribe().
    return renamed_option(
        drain_timeout,
        grace,
        name="drain_timeout",
        old_name="grace",
        default=DEFAULT_DRAIN_TIMEOUT,
        stacklevel=4,
    )
