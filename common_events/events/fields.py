"""Field types shared by the event models: the wire format's rules in one place.

Types are not coerced across kinds (``"20"`` is not a price, ``20`` is not an id), which
is what pydantic's strict mode does; dates are the one exception, because on the wire
they are strings.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictInt,
    StrictStr,
)

Id = Annotated[StrictStr, Field(min_length=1)]
"""A non-empty identifier (a MongoDB ObjectId in the reference services)."""

Version = Annotated[StrictInt, Field(ge=0)]
"""The record's version for optimistic concurrency: 0 on creation, +1 per update."""


def _integral_floats_as_int(value: float) -> float | int:
    # JavaScript's JSON.stringify writes 20.0 as 20; writing the same bytes keeps the
    # payloads identical to the Node services' for the same data.
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


Price = Annotated[
    float,
    Field(ge=0, strict=True, allow_inf_nan=False),
    PlainSerializer(_integral_floats_as_int, return_type=float | int, when_used="json"),
]
"""A non-negative, finite JSON number."""


_ISO_DATE_TIME = re.compile(r"^[+-]?\d{4,6}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _only_text_or_datetime(value: Any) -> Any:
    # Lax pydantic would read a number, or a string of digits, as a Unix timestamp;
    # the wire only has ISO-8601 strings.
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE_TIME.match(value)):
        return value
    raise ValueError("must be an ISO-8601 date-time string with an offset")


def _to_utc_milliseconds(value: datetime) -> datetime:
    # The wire carries milliseconds (a JavaScript Date has no finer grain); holding
    # exactly what the wire can carry makes a model equal to its own round trip.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-01:00 is a valid ISO-8601 string whose UTC instant has no
        # datetime; a ValueError makes it an invalid event (dead-lettered), not a crash.
        raise ValueError("the instant falls outside the years 1 to 9999 in UTC") from None
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def to_iso_string(value: datetime) -> str:
    """Write a date-time as JavaScript's ``Date.prototype.toISOString()`` does."""
    utc = value.astimezone(UTC)
    # strftime("%Y") does not pad years before 1000 on every platform; JavaScript
    # always writes four digits ("0005-01-01T00:00:00.000Z").
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


UtcDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_only_text_or_datetime),
    AfterValidator(_to_utc_milliseconds),
    PlainSerializer(to_iso_string, return_type=str, when_used="json"),
]
"""A timezone-aware instant held in UTC to the millisecond; written as JavaScript's
``toISOString()`` does: ``2026-11-27T06:40:00.000Z``."""
