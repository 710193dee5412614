"""The pydantic base of every event: wire spelling, strictness and immutability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer
from pydantic.alias_generators import to_camel

from common_events.events.subjects import Subjects

if TYPE_CHECKING:
    from common_events.events.fields import Version


class WireModel(BaseModel):
    """A frozen model whose JSON is the wire format of DESIGN.md.

    Attributes are snake_case, the JSON is camelCase; both spellings are accepted on
    input. Unknown fields are ignored (an older consumer must read a newer producer's
    event) and never written. Optional fields that are absent are left out of the JSON,
    as ``JSON.stringify`` leaves out ``undefined``.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_enum_values=False,
    )

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class Event(WireModel):
    """The base of every event. Each subclass names its ``subject``."""

    subject: ClassVar[Subjects]


class VersionedEvent(Event):
    """An event about a record under optimistic concurrency.

    The reference services apply version N only on top of version N-1: a listener looks
    up the record at ``previous_version`` and raises ``OutOfOrder`` when it is not there
    yet, so the message comes back later.
    """

    if TYPE_CHECKING:
        # Each model declares ``version`` itself, so its keys keep the order the
        # reference services write them in (``id`` first).
        version: Version

    @property
    def previous_version(self) -> int | None:
        """The version this one follows, or ``None`` for the first version (0)."""
        return self.version - 1 if self.version > 0 else None
