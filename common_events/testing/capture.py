"""What a test published on an in-memory bus, and assertions about it.

Nothing is patched: the in-memory broker stores every message it is given, as a real
one does, and this reads the store. So a publisher, a listener that publishes, and a
dead-letter record are all seen the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

from common_events.core.bus import Bus
from common_events.core.codec import (
    DeadLetter,
    EventDecodeError,
    dead_letter_subject,
    decode_dead_letter,
    decode_event,
)
from common_events.events.base import Event
from common_events.events.fields import to_iso_string
from common_events.events.subjects import Subjects
from common_events.transports.memory import MemoryBroker, MemoryTransport, StoredMessage

E = TypeVar("E", bound=Event)

_SHOWN = 10
"""At most this many published events are listed in a failure message."""


def memory_broker(bus: Bus) -> MemoryBroker:
    """The in-memory broker under ``bus``; ``TypeError`` for any other transport."""
    transport = bus.transport
    if not isinstance(transport, MemoryTransport):
        raise TypeError(
            f"this needs a bus on the in-memory transport (the event_bus fixture or "
            f"connect('memory://')), not {bus.url!r}"
        )
    return transport.broker


class PublishedEvents:
    """Every message published on one in-memory bus, decoded on demand."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.broker = memory_broker(bus)

    def raw(self, subject: Subjects | str) -> tuple[StoredMessage, ...]:
        """The stored messages of ``subject``, oldest first, exactly as published."""
        return self.broker.messages(str(subject))

    def subjects(self) -> dict[str, int]:
        """Each subject something was published on, and how many messages."""
        return {subject: len(self.broker.messages(subject)) for subject in self.broker.subjects()}

    def events(self, event_type: type[E], /, **fields: Any) -> list[E]:
        """The ``event_type`` events published on its subject that have ``fields``.

        Fields are given by attribute name (``user_id=``) or wire name (``userId=``); a
        nested object may be given as a dict of some of its fields.
        """
        expected = _expected_fields(event_type, fields)
        return [
            event
            for event, _ in self._decoded(event_type)
            if event is not None and not _differences(event, expected)
        ]

    def assert_published(self, event_type: type[E], /, **fields: Any) -> E:
        """The last ``event_type`` event published with ``fields``; fails with a diff of
        what was published on that subject when there is none."""
        matching = self.events(event_type, **fields)
        if matching:
            return matching[-1]
        raise AssertionError(self._explain(event_type, _expected_fields(event_type, fields)))

    def assert_not_published(self, event_type: type[E], /, **fields: Any) -> None:
        """Fail if an ``event_type`` event with ``fields`` was published."""
        matching = self.events(event_type, **fields)
        if matching:
            wanted = _show_fields(_expected_fields(event_type, fields))
            raise AssertionError(
                f"{event_type.__name__}{' with ' + wanted if wanted else ''} was published "
                f"{len(matching)} time(s) on {event_type.subject.value}; the last one:\n"
                f"  {_show_event(matching[-1])}"
            )

    def dead_letters(self, subject: Subjects | str | type[Event]) -> list[DeadLetter]:
        """The dead-letter records of ``subject`` (a subject or an event type)."""
        name = subject.subject.value if isinstance(subject, type) else str(subject)
        return [
            decode_dead_letter(message.data, message.headers)
            for message in self.raw(dead_letter_subject(name))
        ]

    def _decoded(self, event_type: type[E]) -> list[tuple[E | None, str]]:
        decoded: list[tuple[E | None, str]] = []
        for message in self.raw(event_type.subject):
            try:
                decoded.append((decode_event(event_type, message.data), ""))
            except EventDecodeError as error:
                decoded.append((None, error.problems[0] if error.problems else str(error)))
        return decoded

    def _explain(self, event_type: type[Event], expected: Mapping[str, Any]) -> str:
        subject = event_type.subject.value
        wanted = _show_fields(expected)
        headline = (
            f"no {event_type.__name__}{' with ' + wanted if wanted else ''} "
            f"was published on {subject}"
        )
        decoded = self._decoded(event_type)
        if not decoded:
            others = ", ".join(f"{name} ({count})" for name, count in self.subjects().items())
            return f"{headline}: nothing was published there; published: {others or 'nothing'}"
        lines = [f"{headline}; {len(decoded)} message(s) were published there:"]
        for number, (event, problem) in enumerate(decoded[-_SHOWN:], start=1):
            position = len(decoded) - min(len(decoded), _SHOWN) + number
            if event is None:
                lines.append(f"  #{position} not a valid {event_type.__name__}: {problem}")
                continue
            lines.append(f"  #{position} {_show_event(event)}")
            for name, (want, got) in _differences(event, expected).items():
                lines.append(f"       {name}: expected {_show(want)}, got {_show(got)}")
        if len(decoded) > _SHOWN:
            lines.insert(1, f"  ({len(decoded) - _SHOWN} older message(s) not shown)")
        return "\n".join(lines)


def _expected_fields(event_type: type[BaseModel], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` by attribute name; a ``TypeError`` names an unknown field at once."""
    by_alias = {info.alias: name for name, info in event_type.model_fields.items() if info.alias}
    expected: dict[str, Any] = {}
    for given, value in fields.items():
        name = given if given in event_type.model_fields else by_alias.get(given)
        if name is None:
            known = ", ".join(event_type.model_fields)
            raise TypeError(f"{event_type.__name__} has no field {given!r}; its fields: {known}")
        annotation = event_type.model_fields[name].annotation
        nested = _nested_model(annotation)
        if nested is not None and isinstance(value, Mapping):
            value = _expected_fields(nested, value)
        expected[name] = value
    return expected


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _differences(model: BaseModel, expected: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Field (dotted for nested objects) -> (expected, actual), for every mismatch."""
    differences: dict[str, tuple[Any, Any]] = {}
    for name, want in expected.items():
        got = getattr(model, name)
        if isinstance(want, Mapping) and isinstance(got, BaseModel):
            for inner, pair in _differences(got, want).items():
                differences[f"{name}.{inner}"] = pair
        elif not _same(got, want):
            differences[name] = (want, got)
    return differences


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, datetime) and isinstance(expected, str):
        # Compare a date-time with the string the wire carries for it.
        return to_iso_string(actual) == expected
    return bool(actual == expected)


def _show_fields(fields: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={_show(value)}" for name, value in fields.items())


def _show(value: Any) -> str:
    """A value as a person compares it with the wire: enums by value, date-times as
    ``toISOString()`` writes them, nested objects as their JSON."""
    if isinstance(value, Enum):
        return repr(value.value)
    if isinstance(value, datetime):
        return repr(to_iso_string(value))
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _show_event(event: Event) -> str:
    return f"{type(event).__name__} {event.model_dump_json()}"
