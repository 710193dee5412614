"""A listener class's settings, checked when the class is defined.

A wrong setting fails at ``class ...:`` with a message naming the setting and the fix,
instead of at the first delivery (or, worse, on every delivery until it dead-letters).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from common_events.errors import ListenerDefinitionError


def check_on_message(cls: type[Any], abstract: Callable[..., Any]) -> None:
    """``on_message``, where ``cls`` defines it, must be ``async def``."""
    handler = cls.__dict__.get("on_message")
    if handler is None or handler is abstract:
        return
    function = handler.__func__ if isinstance(handler, staticmethod | classmethod) else handler
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        inspect.unwrap(function)
    ):
        return
    raise ListenerDefinitionError(
        f"{cls.__name__}.on_message is a plain function; write `async def on_message(self, "
        "event, msg)`: the listener awaits it for every delivery"
    )


def check_settings(cls: type[Any]) -> None:
    """Every setting has its type and range; ``concurrency`` fits in ``max_in_flight``."""
    name = cls.__name__
    _flag(cls, "durable")
    _flag(cls, "deliver_all_available")
    durable_name = cls.durable_name
    if durable_name is not None and not (isinstance(durable_name, str) and durable_name):
        raise ListenerDefinitionError(
            f"{name}.durable_name = {durable_name!r}: it is the durable subscription's "
            "name, a non-empty string, or None to use the queue group's name"
        )
    _seconds(cls, "ack_wait", minimum=0.0, inclusive=False, example="5.0")
    _seconds(cls, "retry_delay", minimum=0.0, inclusive=True, example="0.2")
    _count(cls, "max_in_flight", "unacknowledged messages delivered at once", example=16)
    _count(cls, "max_deliveries", "deliveries before a failing message is dead-lettered", 10)
    _count(cls, "concurrency", "handlers that run at once", example=1)
    if cls.concurrency > cls.max_in_flight:
        raise ListenerDefinitionError(
            f"{name}.concurrency = {cls.concurrency} is more than max_in_flight = "
            f"{cls.max_in_flight}: the broker delivers at most max_in_flight messages "
            f"unacknowledged, so no more handlers could run; set max_in_flight = "
            f"{cls.concurrency} (or more), or lower concurrency"
        )


def _flag(cls: type[Any], setting: str) -> None:
    value = getattr(cls, setting)
    if not isinstance(value, bool):
        raise ListenerDefinitionError(
            f"{cls.__name__}.{setting} = {value!r} ({type(value).__name__}): "
            f"write {setting} = True or {setting} = False"
        )


def _seconds(
    cls: type[Any], setting: str, *, minimum: float, inclusive: bool, example: str
) -> None:
    value = getattr(cls, setting)
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ListenerDefinitionError(
            f"{cls.__name__}.{setting} = {value!r} ({type(value).__name__}): it is a number "
            f"of seconds {bound}; write {setting} = {_number_in(value) or example}"
        )
    if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
        raise ListenerDefinitionError(
            f"{cls.__name__}.{setting} = {value!r}: it is a number of seconds {bound}; "
            f"write, for example, {setting} = {example}"
        )


def _count(cls: type[Any], setting: str, meaning: str, example: int) -> None:
    value = getattr(cls, setting)
    if isinstance(value, bool) or not isinstance(value, int):
        fix = _number_in(value, whole=True) or example
        raise ListenerDefinitionError(
            f"{cls.__name__}.{setting} = {value!r} ({type(value).__name__}): it is a whole "
            f"number >= 1 of {meaning}; write {setting} = {fix}"
        )
    if value < 1:
        raise ListenerDefinitionError(
            f"{cls.__name__}.{setting} = {value!r}: it is a whole number >= 1 of {meaning}; "
            f"write, for example, {setting} = {example}"
        )


def _number_in(value: object, *, whole: bool = False) -> str | None:
    """The number a string or float spells, written as the setting wants it, if any."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    if whole:
        return str(int(number)) if number == int(number) else None
    return repr(number)
