"""``Listener[E]``: receives one kind of event, with the reference services' defaults.

The failure policy of DESIGN.md lives here, the one place that joins the transports
(bytes) and the events (models): decode and validate once at the boundary, dispatch,
and decide between ack, retry and dead-letter.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from pydantic import ValidationError

from common_events.core._event_binding import bound_event_type, check_declared_subject
from common_events.core.bus import Bus
from common_events.core.dead_letter import DeadLetter, DeadLetterReason, dead_letter_subject
from common_events.core.message import Message
from common_events.errors import ConfigurationError, ListenerDefinitionError, OutOfOrder
from common_events.events.base import Event
from common_events.events.subjects import Subjects
from common_events.transports.base import (
    SubscriptionOptions,
    TransportMessage,
    TransportSubscription,
)

E = TypeVar("E", bound=Event)

log = logging.getLogger("common_events.listener")


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
    """Seconds before an unacknowledged message is delivered again."""

    max_in_flight: ClassVar[int] = 16
    """At most this many delivered, unacknowledged messages per listener."""

    max_deliveries: ClassVar[int] = 10
    """A message whose handler failed (or raised ``OutOfOrder``) on this many deliveries
    goes to the dead-letter subject instead of being retried again."""

    retry_delay: ClassVar[float] = 0.2
    """Seconds before the first retry of a failed handler where the transport can ask
    for one (memory, JetStream); doubles with each delivery, capped at ``ack_wait``.
    Over NATS Streaming a retry always waits ``ack_wait``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
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
        if cls.ack_wait <= 0:
            raise ListenerDefinitionError(f"{cls.__name__}.ack_wait must be > 0 seconds")
        if cls.max_in_flight < 1:
            raise ListenerDefinitionError(f"{cls.__name__}.max_in_flight must be >= 1")
        if cls.max_deliveries < 1:
            raise ListenerDefinitionError(f"{cls.__name__}.max_deliveries must be >= 1")

    def __init__(self, bus: Bus) -> None:
        if not hasattr(type(self), "event_type"):
            raise TypeError(
                f"{type(self).__name__} is generic; subclass it with an event type, "
                "e.g. class TicketCreatedListener(Listener[TicketCreatedEvent])"
            )
        self.bus = bus
        self._subscription: TransportSubscription | None = None
        self._accepting = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.log = logging.getLogger(f"common_events.listener.{type(self).__name__}")

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

    def next_retry_delay(self, delivery_count: int) -> float:
        """Seconds to wait before delivery ``delivery_count + 1`` after a failure."""
        return float(min(self.ack_wait, self.retry_delay * 2 ** max(delivery_count - 1, 0)))

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
        self._accepting = True
        options = self.subscription_options
        self._subscription = await self.bus.subscribe(
            self.subject.value, self._on_delivery, options
        )
        self.log.info(
            "listening to %s (queue group %r, durable %r)",
            self.subject.value,
            options.queue_group,
            options.durable_name,
        )
        return self

    def pause(self) -> None:
        """Stop taking new messages; what arrives is left unacknowledged for later."""
        self._accepting = False

    async def wait_idle(self) -> None:
        """Wait until no handler runs."""
        await self._idle.wait()

    async def close(self, grace: float = 10.0) -> None:
        """Stop: take no new messages, wait up to ``grace`` seconds for running
        handlers, then close the subscription. A durable survives and resumes later."""
        await self._leave(grace, remove_durable=False)

    async def unsubscribe(self, grace: float = 10.0) -> None:
        """Like ``close()``, but the broker forgets the durable subscription."""
        await self._leave(grace, remove_durable=True)

    async def _leave(self, grace: float, *, remove_durable: bool) -> None:
        self.pause()
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        try:
            async with asyncio.timeout(grace):
                await self.wait_idle()
        except TimeoutError:
            self.log.warning(
                "%d handler(s) still running after %.1fs; closing anyway, their messages "
                "will be redelivered",
                self._in_flight,
                grace,
            )
        if remove_durable:
            await subscription.unsubscribe()
        else:
            await subscription.close()
        self.log.info("stopped listening to %s", self.subject.value)

    # -- delivery --------------------------------------------------------------------

    async def _on_delivery(self, raw: TransportMessage) -> None:
        if not self._accepting:
            # Shutting down: leave it unacknowledged; it comes back to another member
            # or to this service's next start.
            return
        await self.handle_delivery(raw)

    async def handle_delivery(self, raw: TransportMessage) -> None:
        """Run one delivery through the listener: decode, validate, ``on_message``, and
        the ack / retry / dead-letter policy. Its subscription calls this for every
        message; test tools call it to hand over one message themselves."""
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._process(raw)
        except Exception:
            # The policy below catches handler errors; this is a bug or a broker error
            # while acking. Keep the listener alive: the message comes back later.
            self.log.exception("could not process %s #%d", raw.subject, raw.sequence)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _process(self, raw: TransportMessage) -> None:
        if raw.delivery_count > self.max_deliveries:
            await self._dead_letter(
                raw,
                DeadLetterReason.MAX_DELIVERIES,
                f"delivered {raw.delivery_count} times, more than "
                f"max_deliveries={self.max_deliveries}",
            )
            return
        try:
            event = self.event_type.model_validate_json(raw.data)
        except ValidationError as error:
            invalid_json = any(e["type"] == "json_invalid" for e in error.errors())
            reason = (
                DeadLetterReason.INVALID_JSON if invalid_json else DeadLetterReason.INVALID_EVENT
            )
            await self._dead_letter(raw, reason, str(error))
            return
        msg = Message(raw)
        try:
            await self.on_message(cast(E, event), msg)
        except OutOfOrder as error:
            self.log.info(
                "%s #%d is out of order (%s); it will be delivered again",
                raw.subject,
                raw.sequence,
                error,
            )
            await self._retry_later(raw, msg, error)
        except Exception as error:
            self.log.exception(
                "handler failed on %s #%d (delivery %d of at most %d)",
                raw.subject,
                raw.sequence,
                raw.delivery_count,
                self.max_deliveries,
            )
            await self._retry_later(raw, msg, error)

    async def _retry_later(self, raw: TransportMessage, msg: Message, error: Exception) -> None:
        if msg.acked:
            return  # the handler acknowledged before it raised: the work is done
        if raw.delivery_count >= self.max_deliveries:
            await self._dead_letter(
                raw,
                DeadLetterReason.MAX_DELIVERIES,
                f"{type(error).__name__}: {error} (on delivery {raw.delivery_count} of "
                f"max_deliveries={self.max_deliveries})",
            )
            return
        await raw.nak(self.next_retry_delay(raw.delivery_count))

    async def _dead_letter(
        self, raw: TransportMessage, reason: DeadLetterReason, error: str
    ) -> None:
        record = DeadLetter.of(
            subject=raw.subject,
            queue_group=self.queue_group,
            reason=reason,
            error=error,
            delivery_count=raw.delivery_count,
            sequence=raw.sequence,
            data=raw.data,
        )
        target = dead_letter_subject(raw.subject)
        # Published before the ack: if this fails, the message is not acknowledged
        # and comes back, so nothing is lost.
        await self.bus.publish(target, record.model_dump_json().encode("utf-8"))
        await raw.ack()
        self.log.warning(
            "%s #%d sent to %s: %s", raw.subject, raw.sequence, target, reason.value
        )
