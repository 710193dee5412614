"""Reading the event type out of ``Publisher[TicketCreatedEvent]`` at class definition."""

from __future__ import annotations

from typing import Any, TypeVar, get_args, get_origin

from common_events.errors import ListenerDefinitionError
from common_events.events.base import Event


def bound_event_type(cls: type[Any], generic_base: type[Any]) -> type[Event] | None:
    """The event type ``cls`` binds ``generic_base``'s parameter to.

    ``None`` while the class is still generic (``class Base(Listener[E])``), so abstract
    intermediate classes can be written; a concrete subclass inherits its parent's.
    """
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if not (isinstance(origin, type) and issubclass(origin, generic_base)):
            continue
        (argument,) = get_args(base)
        if isinstance(argument, TypeVar):
            return None
        if isinstance(argument, type) and issubclass(argument, Event) and argument is not Event:
            if not hasattr(argument, "subject"):
                raise ListenerDefinitionError(
                    f"{cls.__name__}: {argument.__name__} has no subject; "
                    "an event model must declare `subject: ClassVar[Subjects] = ...`"
                )
            return argument
        raise ListenerDefinitionError(
            f"{cls.__name__}: {generic_base.__name__}[...] takes an event model such as "
            f"TicketCreatedEvent, not {argument!r}"
        )
    inherited = getattr(cls, "event_type", None)
    return inherited if isinstance(inherited, type) and issubclass(inherited, Event) else None


def check_declared_subject(cls: type[Any], event: type[Event]) -> None:
    """A class that declares ``subject`` must declare its event's; then set it."""
    declared = getattr(cls, "subject", None)
    if declared is not None and declared != event.subject:
        raise ListenerDefinitionError(
            f"{cls.__name__} declares subject {str(declared)!r}, but its event "
            f"{event.__name__} travels on {event.subject.value!r}; remove the subject "
            "attribute (it comes from the event type) or fix the type parameter"
        )
    cls.subject = event.subject
    cls.event_type = event
