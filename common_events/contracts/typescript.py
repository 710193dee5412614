"""TypeScript of the events, for the Node services: declarations (``.d.ts``) or a module.

The Node services of the reference system declare the same events by hand, as
``interface TicketCreatedEvent { subject: Subjects.TicketCreated; data: {...} }``. This
writes those declarations from the exported JSON Schemas, so both languages have one
source of truth.

The enums are regular enums, never ``const enum``: a project compiled with
``isolatedModules`` or ``verbatimModuleSyntax`` (Vite, esbuild, swc, Next.js) cannot
read an ambient const enum (TS2748), and a value such as ``Subjects.TicketCreated`` has
to exist at run time in a plain Node service anyway. In a declaration file the enums are
``declare``d: their JavaScript comes from the npm package (``common-events schema
npm``). A module (``.ts``) carries the enums itself, for a project that keeps the
contracts in its own source tree.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from common_events.contracts.schema import Schema, export_schemas, member_name
from common_events.events.subjects import OrderStatus, Subjects

logger = logging.getLogger(__name__)

INDENT = "  "
_DATE_TIME_DOC = (
    "An ISO-8601 date-time with an offset, as `Date.prototype.toISOString()` writes it."
)


def typescript_declarations(
    schemas: Mapping[str, Schema] | None = None,
    *,
    version: str | None = None,
    enums: tuple[type[Enum], ...] = (OrderStatus,),
    written_by: str = "common-events schema typescript",
) -> str:
    """The ``.d.ts`` text: ``Subjects``, the enums, one interface per event, ``AnyEvent``
    and ``EventOf``. The enums are declared; their values exist where the npm package
    (or a module written by :func:`typescript_module`) is loaded."""
    return _typescript(schemas, version, enums, written_by, declare=True)


def typescript_module(
    schemas: Mapping[str, Schema] | None = None,
    *,
    version: str | None = None,
    enums: tuple[type[Enum], ...] = (OrderStatus,),
    written_by: str = "common-events schema typescript",
) -> str:
    """The same as :func:`typescript_declarations`, as a ``.ts`` module whose enums
    compile to JavaScript in the project that includes it."""
    return _typescript(schemas, version, enums, written_by, declare=False)


def event_subjects(schemas: Mapping[str, Schema]) -> list[str]:
    """The subjects of ``schemas`` in ``Subjects`` order, unknown ones after, sorted."""
    subjects = [subject for subject in (s.value for s in Subjects) if subject in schemas]
    return subjects + sorted(subject for subject in schemas if subject not in subjects)


def interface_name(subject: str, schema: Schema) -> str:
    """``TicketCreatedEvent``: the event's title, or one made from its subject."""
    return str(schema.get("title") or f"{member_name(subject)}Event")


def _typescript(
    schemas: Mapping[str, Schema] | None,
    version: str | None,
    enums: tuple[type[Enum], ...],
    written_by: str,
    *,
    declare: bool,
) -> str:
    schemas = export_schemas() if schemas is None else schemas
    enum_names = {enum.__name__ for enum in enums}
    lines = [
        "// The events of common-events"
        + (f" {version}" if version else "")
        + f", written from its event models by `{written_by}`.",
        "// Do not edit: change the models and write this file again.",
        "",
    ]
    subjects = event_subjects(schemas)
    lines += _enum("Subjects", "Every subject an event travels on.", subjects, declare)
    for enum in enums:
        values = [str(m.value) for m in enum]
        lines += _enum(enum.__name__, _first_line(enum.__doc__), values, declare)
    interface_names = []
    for subject in subjects:
        schema = schemas[subject]
        name = interface_name(subject, schema)
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
    lines.append("")
    lines.append("/** The event of a subject: `EventOf<Subjects.TicketCreated>` is")
    lines.append(" * `TicketCreatedEvent`. */")
    lines.append("export type EventOf<S extends Subjects> = Extract<AnyEvent, { subject: S }>;")
    return "\n".join(lines) + "\n"


def _enum(name: str, doc: str | None, values: list[str], declare: bool) -> list[str]:
    lines = _doc(doc, "")
    lines.append(f"export {'declare ' if declare else ''}enum {name} {{")
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
