"""``Publisher[E]``: sends one kind of event, and waits for the broker to confirm."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from common_events.core._event_binding import bound_event_type, check_declared_subject
from common_events.core.bus import Bus
from common_events.core.codec import encode_event
from common_events.errors import BatchPublishError
from common_events.events.base import Event
from common_events.events.subjects import Subjects
from common_events.transports.base import PublishAck

E = TypeVar("E", bound=Event)

logger = logging.getLogger(__name__)


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
        ``PublishError`` / ``PublishTimeout`` when the broker does not confirm. The bus's
        middlewares run around the send and may add headers.
        """
        self._check_type(event)
        subject = self.subject.value
        send = self.bus.direct_publish
        if send is not None:
            ack = await send(subject, encode_event(event), headers)
        else:
            ack = await self.bus.publish(subject, encode_event(event), headers, event=event)
        logger.debug("published %s: %s", subject, ack)
        return ack

    async def publish_many(self, events: Iterable[E]) -> list[PublishAck]:
        """Publish ``events`` with many confirmations outstanding at once.

        Faster than awaiting ``publish`` one by one, and than ``asyncio.gather`` over it:
        the transport pipelines the batch within its own in-flight limit (NATS
        Streaming: ``max_pub_acks_inflight``). Every event is checked before the first
        is sent, and every one is attempted. Returns the confirmations in the order of
        ``events``; if any failed, ``BatchPublishError`` says which were confirmed.
        """
        batch = list(events)
        for event in batch:
            self._check_type(event)
        payloads = [encode_event(event) for event in batch]
        results = await self.bus.publish_many(self.subject.value, payloads, events=batch)
        acks = [result for result in results if isinstance(result, PublishAck)]
        if len(acks) == len(batch):
            return acks
        errors = [result for result in results if isinstance(result, Exception)]
        raise BatchPublishError(
            f"{len(acks)} of {len(batch)} events were confirmed; the first failure: "
            f"{errors[0]}",
            [result if isinstance(result, PublishAck) else None for result in results],
            list(errors),
        ) from errors[0]

    def _check_type(self, event: object) -> None:
        if not isinstance(event, self.event_type):
            raise TypeError(
                f"{type(self).__name__} publishes {self.event_type.__name__} on "
                f"{self.subject.value!r}, not {type(event).__name__}"
            )
