"""``Publisher[E]``: sends one kind of event, and waits for the broker to confirm."""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Awaitable, Coroutine, Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from common_events.core._event_binding import bound_event_type, check_declared_subject
from common_events.core.bus import Bus
from common_events.core.codec import encode_event
from common_events.errors import BatchPublishError
from common_events.events.base import Event
from common_events.events.subjects import Subjects
from common_events.transports.base import PublishAck, PublishConfirmation, failed_confirmation

E = TypeVar("E", bound=Event)

logger = logging.getLogger(__name__)


class Publisher(Generic[E]):
    """Publishes events of type ``E`` on their subject.

    ``class TicketCreatedPublisher(Publisher[TicketCreatedEvent]): pass`` is complete:
    the subject comes from the event type.
    """

    event_type: ClassVar[type[Event]]
    subject: ClassVar[Subjects]
    _subject_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event = bound_event_type(cls, Publisher)
        if event is not None:
            check_declared_subject(cls, event)
            # The subject's string, read once: an enum member's value is a descriptor
            # call, a tenth of an in-memory publish.
            cls._subject_name = event.subject.value

    def __init__(self, bus: Bus) -> None:
        if not hasattr(type(self), "event_type"):
            raise TypeError(
                f"{type(self).__name__} is generic; subclass it with an event type, "
                "e.g. class TicketCreatedPublisher(Publisher[TicketCreatedEvent]): pass"
            )
        self.bus = bus

    def publish(
        self, event: E, *, headers: Mapping[str, str] | None = None
    ) -> Coroutine[Any, Any, PublishAck]:
        """Publish ``event`` as its wire JSON; await the result for the confirmation.

        ``await publisher.publish(event)`` returns the ``PublishAck`` once the broker has
        confirmed the event, or raises ``PublishError`` / ``PublishTimeout`` when it does
        not, and ``TypeError`` (nothing sent) for an event of another type. The result
        is a coroutine (``asyncio.create_task`` and task groups take it). On memory and
        NATS Streaming with no middleware seeing publishes, the event is sent when
        ``publish`` is called and the result is also an asyncio future
        (``PublishConfirmation``), so ``asyncio.gather`` over many publishes needs no
        task per publish; elsewhere the event is sent when the result runs. The bus's
        middlewares run around the send and may add headers.
        """
        try:
            self._check_type(event)
            data = encode_event(event)
        except Exception as error:
            return failed_confirmation(error)
        publication = self.bus.start_publish(self._subject_name, data, headers, event=event)
        if logger.isEnabledFor(logging.DEBUG):
            if isinstance(publication, PublishConfirmation):
                # A callback, not a wrapping coroutine: gather still needs no task.
                publication.add_done_callback(_log_confirmation)
                return publication
            return _logged(publication)
        return publication

    if sys.version_info >= (3, 12):
        # It returns a coroutine: what asks inspect.iscoroutinefunction before calling
        # (Starlette's background tasks, for one) treats it as the coroutine function it
        # was. Python 3.11 has no way to say so.
        publish = inspect.markcoroutinefunction(publish)

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


async def _logged(publication: Awaitable[PublishAck]) -> PublishAck:
    ack = await publication
    logger.debug("published %s: %s", ack.subject, ack)
    return ack


def _log_confirmation(confirmation: asyncio.Future[PublishAck]) -> None:
    if confirmation.cancelled():
        logger.debug("publish given up before its confirmation")
    elif (error := confirmation.exception()) is not None:
        # Read here, the error no longer warns as never retrieved: this line says it.
        logger.debug("publish failed: %s", error)
    else:
        ack = confirmation.result()
        logger.debug("published %s: %s", ack.subject, ack)
