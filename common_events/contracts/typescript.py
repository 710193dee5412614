"""TypeScript declarations (``.d.ts``) of the events, for the Node services.

The Node services of the reference system declare the same events by hand, as
``interface TicketCreatedEvent { subject: Subjects.TicketCreated; data: {...} }``. This
writes those declarations from the exported JSON Schemas, so both languages have one
source of truth.

The enums are ``const enum``: a declaration file carries no JavaScript, and ``tsc``
inlines a const enum's values (``Subjects.TicketCreated`` becomes ``"ticket:created"``)
so nothing has to exist at run time. (Projects compiled with ``isolatedModules`` cannot
inline ambient const enums; they compare with the string values instead.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from common_events.contracts.schema import Schema, export_schemas, member_name
from common_events.events.subjects import OrderStatus, Subjects

INDENT = "  "
_DATE_TIME_DOC = (
    "An ISO-8601 date-time with an offset, as `Date.prototype.toISOString()` writes it."
)


def typescript_declarations(
    schemas: Mapping[str, Schema] | None = None,
    *,
    version: str | None = None,
    enums: tuple[type[Enum], ...] = (OrderStatus,),
) -> str:
    """The ``.d.ts`` text: ``Subjects``, the enums, one interface per event, and the
    ``AnyEvent`` union."""
    schemas = export_schemas() if schemas is None else schemas
    enum_names = {enum.__name__ for enum in enums}
    lines = [
        "// The events of common-events"
        + (f" {version}" if version else "")
        + ", written from its event models by `common-events schema typescript`.",
        "// Do not edit: change the models and write this file again.",
        "",
    ]
    subjects = [subject for subject in (s.value for s in Subjects) if subject in schemas]
    subjects += sorted(subject for subject in schemas if subject not in subjects)
    lines += _enum("Subjects", "Every subject an event travels on.", subjects)
    for enum in enums:
        lines += _enum(enum.__name__, _first_line(enum.__doc__), [str(m.value) for m in enum])
    interface_names = []
    for subject in subjects:
        schema = schemas[subject]
        name = str(schema.get("title") or f"{member_name(subject)}Event")
        interface_names.append(name)
        lines += _doc(schema.get("description"), "")
        lines.append(f"export interface {name} {{")
        lines.append(f"{INDENT}subject: Subjects.{member_name(subject)};")
        lines.append(f"{INDENT}data: {_type(schema, 1, enum_names)};")
        lines.append("}")
        lines.append("")
    lines.append("/** Any event of the system; narrow it on `subject`. */")
    lines.append("export type AnyEvent =")
    lines += [f"{INDENT}| {name}" for name in interface_names[:-1]]
    lines.append(f"{INDENT}| {interface_names[-1]};" if interface_names else f"{INDENT}never;")
    return "\n".join(lines) + "\n"


def _enum(name: str, doc: str | None, values: list[str]) -> list[str]:
    lines = _doc(doc, "")
    lines.append(f"export const enum {name} {{")
    lines += [f"{INDENT}{member_name(value)} = {json.dumps(value)}," for value in values]
    lines.append("}")
    lines.append("")
    return lines


def _type(schema: Any, depth: int, enum_names: set[str]) -> str:
    if not isinstance(schema, dict) or not schema:
        return "unknown"
    title = schema.get("title")
    if "enum" in schema:
        if title in enum_names:
            return str(title)
        return " | ".join(json.dumps(value) for value in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return " | ".join(_type(branch, depth, enum_names) for branch in schema[combinator])
    declared = schema.get("type")
    kinds = declared if isinstance(declared, list) else [declared]
    return " | ".join(_one_type(kind, schema, depth, enum_names) for kind in kinds)


def _one_type(kind: Any, schema: Schema, depth: int, enum_names: set[str]) -> str:
    if kind in ("number", "integer"):
        return "number"
    if kind in ("string", "boolean", "null"):
        return str(kind)
    if kind == "array":
        item = _type(schema.get("items", {}), depth, enum_names)
        return f"Array<{item}>"
    if kind == "object" or "properties" in schema:
        return _object(schema, depth, enum_names)
    return "unknown"


def _object(schema: Schema, depth: int, enum_names: set[str]) -> str:
    properties: Mapping[str, Any] = schema.get("properties", {})
    if not properties:
        return "Record<string, unknown>"
    required = set(schema.get("required", ()))
    inner = INDENT * (depth + 1)
    lines = ["{"]
    for name, prop in properties.items():
        key = name if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", name) else json.dumps(name)
        optional = "" if name in required else "?"
        if isinstance(prop, dict) and prop.get("format") == "date-time":
            lines.append(f"{inner}/** {_DATE_TIME_DOC} */")
        lines.append(f"{inner}{key}{optional}: {_type(prop, depth + 1, enum_names)};")
    lines.append(f"{INDENT * depth}}}")
    return "\n".join(lines)


def _doc(text: Any, indent: str) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        return []
    # reStructuredText ``code`` reads as Markdown `code` in an editor's tooltip.
    body = text.strip().replace("*/", "*\\/").replace("``", "`")
    lines = body.splitlines()
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in lines), f"{indent} */"]


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0] if text and text.strip() else None
