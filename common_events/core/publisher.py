"""``Publisher[E]``: sends one kind of event, and waits for the broker to confirm."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from common_events.core._event_binding import bound_event_type, check_declared_subject
from common_events.core.bus import Bus
from common_events.errors import BatchPublishError
from common_events.events.base import Event
from common_events.events.subjects import Subjects
from common_events.transports.base import PublishAck

E = TypeVar("E", bound=Event)

log = logging.getLogger("common_events.publisher")


class Publisher(Generic[E]):
    """Publishes events of type ``E`` on their subject.

    ``class TicketCreatedPublisher(Publisher[TicketCreatedEvent]): pass`` is complete:
    the subject comes from the event type.
    """

    event_type: ClassVar[type[Event]]
    subject: ClassVar[Subjects]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event = bound_event_type(cls, Publisher)
        if event is not None:
            check_declared_subject(cls, event)

    def __init__(self, bus: Bus) -> None:
        if not hasattr(type(self), "event_type"):
            raise TypeError(
                f"{type(self).__name__} is generic; subclass it with an event type, "
                "e.g. class TicketCreatedPublisher(Publisher[TicketCreatedEvent]): pass"
            )
        self.bus = bus

    async def publish(self, event: E, *, headers: Mapping[str, str] | None = None) -> PublishAck:
        """Send ``event`` as its wire JSON; return once the broker has confirmed it.

        Raises ``TypeError`` (before sending anything) for an event of another type, and
        ``PublishError`` / ``PublishTimeout`` when the broker does not confirm.
        """
        if not isinstance(event, self.event_type):
            raise TypeError(
                f"{type(self).__name__} publishes {self.event_type.__name__} on "
                f"{self.subject.value!r}, not {type(event).__name__}"
            )
        data = event.model_dump_json().encode("utf-8")
        ack = await self.bus.publish(self.subject.value, data, headers)
        log.debug("published %s: %s", self.subject.value, ack)
        return ack

    async def publish_many(self, events: Iterable[E], *, window: int = 256) -> list[PublishAck]:
        """Publish ``events`` with up to ``window`` confirmations outstanding at once.

        Returns the confirmations in the order of ``events``. Every event is checked
        before the first is sent. If a publish fails, no new one starts, and once those
        under way have finished ``BatchPublishError`` says which were confirmed.
        """
        batch = list(events)
        for event in batch:
            if not isinstance(event, self.event_type):
                raise TypeError(
                    f"{type(self).__name__} publishes {self.event_type.__name__} on "
                    f"{self.subject.value!r}, not {type(event).__name__}"
                )
        if window < 1:
            raise ValueError("window must be >= 1")
        acks: list[PublishAck | None] = [None] * len(batch)
        errors: list[BaseException] = []
        positions = iter(range(len(batch)))
        subject = self.subject.value

        # A fixed number of workers rather than a task per event: tens of thousands of
        # suspended tasks cost more than the broker round trips they overlap.
        async def worker() -> None:
            for position in positions:
                if errors:
                    return
                data = batch[position].model_dump_json().encode("utf-8")
                try:
                    acks[position] = await self.bus.publish(subject, data)
                except Exception as error:
                    errors.append(error)
                    return

        await asyncio.gather(*(worker() for _ in range(min(window, len(batch)))))
        if errors:
            confirmed = sum(ack is not None for ack in acks)
            raise BatchPublishError(
                f"{confirmed} of {len(batch)} events were confirmed; the first failure: "
                f"{errors[0]}",
                acks,
                errors,
            ) from errors[0]
        return [ack for ack in acks if ack is not None]
