"""JSON Schema (draft 2020-12) of each event's wire JSON, made from the pydantic models.

Pydantic's validation-mode schema is the starting point: it already has the camelCase
names, the required fields, ``minLength``/``minimum``, the enum values and the
``date-time`` format. What it gets wrong for the wire, this module fixes:

- optional fields come out as ``anyOf [X, null]`` with ``default: null``; on the wire an
  absent field is left out (as ``JSON.stringify`` leaves out ``undefined``), never
  ``null``, so the field is just ``X`` and not required;
- nested models and enums are ``$ref``s into ``$defs``; they are inlined so each
  subject's file stands alone and reads top to bottom;
- every property gets a ``title`` made from its name ("Userid"); only the titles that
  name a type (an event, a nested object, an enum) are kept;
- ``format: date-time`` is only an annotation in draft 2020-12 (validators do not check
  it unless asked), so a ``pattern`` that requires the offset is added.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

from common_events.events.base import Event, WireModel
from common_events.events.registry import EVENT_TYPES
from common_events.events.subjects import Subjects

logger = logging.getLogger(__name__)

Schema = dict[str, Any]
"""A JSON Schema as a plain JSON value."""

DIALECT = "https://json-schema.org/draft/2020-12/schema"

SUBJECT_KEYWORD = "x-subject"
"""Names the subject inside each schema, so a file's name is not the source of truth."""

DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
"""ISO-8601 with an offset (the RFC 3339 profile). JavaScript's ``toISOString()``
writes ``2026-11-27T06:40:00.000Z``, which is one such string."""


def event_schema(model: type[Event], subject: str | None = None) -> Schema:
    """The JSON Schema of ``model``'s wire JSON on ``subject`` (default: its own)."""
    schema: Schema = {
        "$schema": DIALECT,
        SUBJECT_KEYWORD: str(subject if subject is not None else model.subject),
    }
    schema.update(model_schema(model))
    return schema


def model_schema(model: type[WireModel]) -> Schema:
    """The JSON Schema of any wire model's JSON (an event, a nested object, a record)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions: Mapping[str, Any] = raw.pop("$defs", {})
    body: Schema = _wire_schema(raw, definitions, keep_title=True)
    return body


def export_schemas(events: Mapping[Subjects, type[Event]] | None = None) -> dict[str, Schema]:
    """Every subject's schema, keyed by the subject's wire string, in ``Subjects`` order."""
    events = EVENT_TYPES if events is None else events
    return {str(subject): event_schema(model, str(subject)) for subject, model in events.items()}


def member_name(value: str) -> str:
    """``"ticket:created"`` -> ``TicketCreated``; ``"awaiting:payment"`` -> ``AwaitingPayment``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", value))


def schema_file_name(subject: str) -> str:
    """``ticket:created`` -> ``ticket.created.json``.

    A colon is not allowed in a Windows file name, and these files ship in the wheel,
    which must install everywhere; the subject itself is inside each file.
    """
    return subject.replace(":", ".") + ".json"


def dumps(schema: Schema) -> str:
    """The file text of one schema: stable key order, two-space indent, final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path, schemas: Mapping[str, Schema]) -> list[Path]:
    """Write one file per subject into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for subject, schema in schemas.items():
        path = directory / schema_file_name(subject)
        path.write_text(dumps(schema), encoding="utf-8")
        written.append(path)
    logger.info("wrote %d schemas to %s", len(written), directory)
    return written


def read_schemas(directory: Path) -> dict[str, Schema]:
    """The schemas of a directory written by ``write_schemas``, keyed by subject."""
    if not directory.is_dir():
        raise FileNotFoundError(f"no schema directory at {directory}")
    return load_schema_texts(
        {path.name: path.read_text(encoding="utf-8") for path in directory.glob("*.json")}
    )


def load_schema_texts(texts: Mapping[str, str]) -> dict[str, Schema]:
    """Parse schema files (name -> text) into subject -> schema, sorted by subject."""
    schemas: dict[str, Schema] = {}
    for name, text in texts.items():
        schema = json.loads(text)
        subject = schema.get(SUBJECT_KEYWORD) if isinstance(schema, dict) else None
        if not isinstance(subject, str):
            raise ValueError(f"{name} is not an event schema: it has no {SUBJECT_KEYWORD!r}")
        if subject in schemas:
            raise ValueError(f"{name}: subject {subject!r} appears in two files")
        schemas[subject] = schema
    return dict(sorted(schemas.items()))


def _wire_schema(node: Any, definitions: Mapping[str, Any], *, keep_title: bool) -> Any:
    if isinstance(node, list):
        return [_wire_schema(item, definitions, keep_title=False) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        target = deepcopy(definitions[name])
        # Keywords beside the $ref (a description, say) refine the inlined definition.
        target.update({key: value for key, value in node.items() if key != "$ref"})
        return _wire_schema(target, definitions, keep_title=True)
    node = _without_null_branch(node)
    result: Schema = {}
    for key, value in node.items():
        if key == "properties":
            result[key] = {
                name: _wire_schema(prop, definitions, keep_title=False)
                for name, prop in value.items()
            }
        elif key in {"items", "additionalProperties", "anyOf", "oneOf", "allOf"}:
            result[key] = _wire_schema(value, definitions, keep_title=False)
        else:
            result[key] = value
    names_a_type = result.get("type") == "object" or "enum" in result
    if "title" in result and not (keep_title and names_a_type):
        del result["title"]
    if result.get("format") == "date-time":
        result.setdefault("pattern", DATE_TIME_PATTERN)
    return _in_reading_order(result)


# Pydantic sorts a schema's keywords alphabetically; a person reads the name and the
# type first and the properties last. Properties keep the wire's key order.
_KEYWORD_ORDER = ("$schema", SUBJECT_KEYWORD, "title", "description", "type", "enum", "format")


def _in_reading_order(node: Schema) -> Schema:
    first = {key: node[key] for key in _KEYWORD_ORDER if key in node}
    middle = {
        key: value
        for key, value in node.items()
        if key not in first and key not in {"properties", "required"}
    }
    last = {key: node[key] for key in ("properties", "required") if key in node}
    return first | middle | last


def _without_null_branch(node: Schema) -> Schema:
    """``anyOf [X, {type: null}]`` with ``default: null`` -> ``X``."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or node.get("default", ...) is not None:
        return node
    kept = [branch for branch in branches if branch != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(branches):
        return node
    merged = {key: value for key, value in node.items() if key not in {"anyOf", "default"}}
    merged.update(kept[0])
    return merged
