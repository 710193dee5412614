"""Is today's schema safe next to services that run an older version?

Services upgrade on their own schedule, so a message written by one version is read by
another every day. Two sides can break:

- *consumers on X*: services on version X that receive what this version sends. A new
  producer breaks them when it sends something their schema rejects or leaves out
  something it requires (the *forward* direction).
- *producers on X*: services on version X whose events this version receives. They
  break when this version rejects what they send or requires what they leave out (the
  *backward* direction).

``backward`` mode fails only on the second, ``forward`` only on the first, ``full`` on
either. Unknown fields are ignored by every consumer (the models use
``extra="ignore"``), so adding a field is not a change a consumer notices.

The comparison is structural, on the JSON Schemas: type sets (``integer`` is a kind of
``number``), ``enum`` values, required fields, properties (recursively, so a nested
change is reported as ``ticket.price``), array items, and the usual bounds, ``pattern``
and ``format``. A combinator (``anyOf``, ``oneOf``, ``allOf``, ``not``) that changed is
reported as a change that breaks both sides, because proving it safe is beyond a
structural comparison.

One piece of over 400 lines on purpose: the verdicts are one recursive walk over the
JSON Schema keywords, each rule beside the others so their directions can be compared.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from common_events.contracts.schema import Schema

logger = logging.getLogger(__name__)


class Mode(StrEnum):
    BACKWARD = "backward"
    """Consumers on this version read what producers on the older versions send."""
    FORWARD = "forward"
    """Consumers on the older versions read what producers on this version send."""
    FULL = "full"
    """Both; the default, since producers and consumers deploy independently."""


class ChangeKind(StrEnum):
    EVENT_ADDED = "event added"
    EVENT_REMOVED = "event removed"
    FIELD_ADDED = "field added"
    FIELD_REMOVED = "field removed"
    FIELD_RENAMED = "field renamed"
    FIELD_NOW_REQUIRED = "field now required"
    FIELD_NOW_OPTIONAL = "field now optional"
    TYPE_CHANGED = "type changed"
    TYPE_WIDENED = "type widened"
    TYPE_NARROWED = "type narrowed"
    ENUM_VALUES_ADDED = "enum values added"
    ENUM_VALUES_REMOVED = "enum values removed"
    CONSTRAINT_LOOSENED = "constraint loosened"
    CONSTRAINT_TIGHTENED = "constraint tightened"
    CONSTRAINT_CHANGED = "constraint changed"
    SCHEMA_CHANGED = "schema changed"


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between an older schema and today's, and whom it breaks."""

    subject: str
    kind: ChangeKind
    path: str
    """The field's dotted wire path (``ticket.price``); empty for the event itself."""
    detail: str
    """What changed, in words: ``field ticket.price changed type number -> string``."""
    breaks_consumers: bool
    breaks_producers: bool

    def breaks(self, mode: Mode) -> bool:
        """Whether this change fails a check in ``mode``."""
        if mode is Mode.BACKWARD:
            return self.breaks_producers
        if mode is Mode.FORWARD:
            return self.breaks_consumers
        return self.breaks_consumers or self.breaks_producers


@dataclass(frozen=True, slots=True)
class Finding:
    """A change, and the released versions (or directories) it was found against."""

    change: Change
    baselines: tuple[str, ...]

    def breaks(self, mode: Mode) -> bool:
        return self.change.breaks(mode)

    def verdict(self, mode: Mode) -> str:
        """``breaks consumers on 1.3.0``, ``compatible``, ...; breaks outside ``mode``
        are named in brackets, so nothing is hidden."""
        on = ", ".join(self.baselines)
        counted = _sides(self.change, mode)
        ignored = _sides(self.change, Mode.FULL) - counted
        verdict = f"breaks {_join_sides(counted)} on {on}" if counted else "compatible"
        if ignored:
            verdict += f" (breaks {_join_sides(ignored)} on {on}; not checked in {mode} mode)"
        return verdict

    def line(self, mode: Mode) -> str:
        change = self.change
        return f"{change.subject}: {change.detail}: {self.verdict(mode)}"


@dataclass(frozen=True, slots=True)
class CompatibilityReport:
    mode: Mode
    baselines: tuple[str, ...]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def breaking(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.breaks(self.mode))

    @property
    def compatible(self) -> bool:
        return not self.breaking

    def lines(self) -> list[str]:
        """One line per change, then a summary line."""
        lines = [finding.line(self.mode) for finding in self.findings]
        against = ", ".join(self.baselines) if self.baselines else "nothing"
        if not self.findings:
            lines.append(f"no changes against {against}")
        elif self.compatible:
            lines.append(f"{len(self.findings)} change(s), all compatible ({self.mode} mode)")
        else:
            lines.append(
                f"{len(self.breaking)} of {len(self.findings)} change(s) break "
                f"{self.mode} compatibility against {against}"
            )
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())


def compare(old: Mapping[str, Schema], new: Mapping[str, Schema]) -> list[Change]:
    """Every change from ``old`` to ``new`` (subject -> schema), subjects in order."""
    changes: list[Change] = []
    for subject in sorted(old.keys() | new.keys()):
        if subject not in old:
            changes.append(Change(subject, ChangeKind.EVENT_ADDED, "", "new event", False, False))
        elif subject not in new:
            # Consumers on the old version wait for events nobody sends any more, and
            # what old producers still send has no model here to read it with.
            changes.append(
                Change(subject, ChangeKind.EVENT_REMOVED, "", "event removed", True, True)
            )
        else:
            changes.extend(_Comparison(subject).value("", old[subject], new[subject]))
    return changes


def check_compatibility(
    current: Mapping[str, Schema],
    baselines: Mapping[str, Mapping[str, Schema]],
    mode: Mode = Mode.FULL,
) -> CompatibilityReport:
    """Compare ``current`` with each baseline (label -> schemas, e.g. released versions).

    The same change found against several baselines is reported once, with all of them.
    """
    grouped: dict[Change, list[str]] = {}
    for label, schemas in baselines.items():
        for change in compare(schemas, current):
            grouped.setdefault(change, []).append(label)
    findings = tuple(Finding(change, tuple(labels)) for change, labels in grouped.items())
    return CompatibilityReport(mode=mode, baselines=tuple(baselines), findings=findings)


# -- the structural comparison -------------------------------------------------------

_ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})
_COMBINATORS = ("anyOf", "oneOf", "allOf", "not", "if", "then", "else")
# A larger lower bound or a smaller upper bound accepts less.
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT_CONSTRAINTS = ("pattern", "format", "multipleOf", "const")


class _Comparison:
    """Compares one subject's old and new schema, value by value."""

    def __init__(self, subject: str) -> None:
        self.subject = subject

    def change(
        self, kind: ChangeKind, path: str, detail: str, *, consumers: bool, producers: bool
    ) -> Change:
        return Change(self.subject, kind, path, detail, consumers, producers)

    def consumers_break(self, kind: ChangeKind, path: str, detail: str) -> Change:
        return Change(self.subject, kind, path, detail, True, False)

    def producers_break(self, kind: ChangeKind, path: str, detail: str) -> Change:
        return Change(self.subject, kind, path, detail, False, True)

    def both_break(self, kind: ChangeKind, path: str, detail: str) -> Change:
        return Change(self.subject, kind, path, detail, True, True)

    def value(self, path: str, old: Any, new: Any) -> Iterator[Change]:
        old, new = _as_schema(old), _as_schema(new)
        what = f"field {path}" if path else "the event"
        if any(old.get(key) != new.get(key) for key in _COMBINATORS):
            yield self.both_break(ChangeKind.SCHEMA_CHANGED, path, f"{what} changed its schema")
            return
        old_types, new_types = _types(old), _types(new)
        if old_types != new_types:
            wider = _covers(new_types, old_types)
            narrower = _covers(old_types, new_types)
            shown = f"{_show_types(old_types)} -> {_show_types(new_types)}"
            if wider and not narrower:
                yield self.consumers_break(
                    ChangeKind.TYPE_WIDENED, path, f"{what} widened type {shown}"
                )
            elif narrower and not wider:
                yield self.producers_break(
                    ChangeKind.TYPE_NARROWED, path, f"{what} narrowed type {shown}"
                )
            elif not (wider and narrower):
                yield self.both_break(ChangeKind.TYPE_CHANGED, path, f"{what} changed type {shown}")
                return  # the rest of the comparison would only repeat this
        yield from self.enum(path, what, old, new)
        yield from self.constraints(path, what, old, new)
        if "object" in old_types and "object" in new_types:
            yield from self.object(path, old, new)
        if "array" in old_types and "array" in new_types:
            yield from self.value(f"{path}[]" if path else "[]", old.get("items"), new.get("items"))

    def enum(self, path: str, what: str, old: Schema, new: Schema) -> Iterator[Change]:
        if old.get("enum") == new.get("enum"):
            return
        if "enum" not in new:
            yield self.consumers_break(
                ChangeKind.CONSTRAINT_LOOSENED, path, f"{what} is no longer an enum"
            )
            return
        if "enum" not in old:
            yield self.producers_break(
                ChangeKind.CONSTRAINT_TIGHTENED, path, f"{what} is now an enum"
            )
            return
        added = [value for value in new["enum"] if value not in old["enum"]]
        removed = [value for value in old["enum"] if value not in new["enum"]]
        if added:
            # Consumers on the old version reject a value they do not know.
            yield self.consumers_break(
                ChangeKind.ENUM_VALUES_ADDED,
                path,
                f"{what} enum {_plural('value', added)} {_show_values(added)} added",
            )
        if removed:
            yield self.producers_break(
                ChangeKind.ENUM_VALUES_REMOVED,
                path,
                f"{what} enum {_plural('value', removed)} {_show_values(removed)} removed",
            )

    def constraints(self, path: str, what: str, old: Schema, new: Schema) -> Iterator[Change]:
        for keyword in (*_LOWER_BOUNDS, *_UPPER_BOUNDS, *_EXACT_CONSTRAINTS):
            before, after = old.get(keyword), new.get(keyword)
            if before == after:
                continue
            if before is None:
                tighter, words = True, f"{keyword} {_show(after)} added"
            elif after is None:
                tighter, words = False, f"{keyword} {_show(before)} removed"
            elif keyword in _EXACT_CONSTRAINTS or not _comparable(before, after):
                yield self.both_break(
                    ChangeKind.CONSTRAINT_CHANGED,
                    path,
                    f"{what} changed {keyword} {_show(before)} -> {_show(after)}",
                )
                continue
            else:
                tighter = (after > before) == (keyword in _LOWER_BOUNDS)
                words = f"{keyword} {_show(before)} -> {_show(after)}"
            if tighter:
                yield self.producers_break(
                    ChangeKind.CONSTRAINT_TIGHTENED, path, f"{what} tightened {words}"
                )
            else:
                yield self.consumers_break(
                    ChangeKind.CONSTRAINT_LOOSENED, path, f"{what} loosened {words}"
                )

    def object(self, path: str, old: Schema, new: Schema) -> Iterator[Change]:
        old_props: Mapping[str, Any] = old.get("properties", {})
        new_props: Mapping[str, Any] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        # A consumer whose schema is closed rejects fields it does not know.
        old_closed = old.get("additionalProperties") is False
        new_closed = new.get("additionalProperties") is False
        prefix = f"{path}." if path else ""

        removed = [name for name in old_props if name not in new_props]
        added = [name for name in new_props if name not in old_props]
        renamed = _pair_renames(removed, added, old_props, new_props)

        for old_name, new_name in renamed:
            was = _required_word(old_name in old_required)
            now = _required_word(new_name in new_required)
            yield self.change(
                ChangeKind.FIELD_RENAMED,
                f"{prefix}{new_name}",
                f"field {prefix}{old_name} renamed to {new_name} ({was} -> {now})",
                consumers=old_name in old_required or old_closed,
                producers=new_name in new_required or new_closed,
            )
        paired_old = {old_name for old_name, _ in renamed}
        paired_new = {new_name for _, new_name in renamed}
        for name in removed:
            if name in paired_old:
                continue
            required = name in old_required
            yield self.change(
                ChangeKind.FIELD_REMOVED,
                f"{prefix}{name}",
                f"field {prefix}{name} removed (was {_required_word(required)})",
                consumers=required,
                producers=new_closed,
            )
        for name in added:
            if name in paired_new:
                continue
            required = name in new_required
            yield self.change(
                ChangeKind.FIELD_ADDED,
                f"{prefix}{name}",
                f"field {prefix}{name} added ({_required_word(required)})",
                consumers=old_closed,
                producers=required,
            )
        for name in old_props:
            if name not in new_props:
                continue
            field_path = f"{prefix}{name}"
            was_required, is_required = name in old_required, name in new_required
            if is_required and not was_required:
                yield self.producers_break(
                    ChangeKind.FIELD_NOW_REQUIRED, field_path, f"field {field_path} now required"
                )
            elif was_required and not is_required:
                yield self.consumers_break(
                    ChangeKind.FIELD_NOW_OPTIONAL, field_path, f"field {field_path} now optional"
                )
            yield from self.value(field_path, old_props[name], new_props[name])
        if new_closed and not old_closed:
            yield self.producers_break(
                ChangeKind.CONSTRAINT_TIGHTENED,
                path,
                f"{'field ' + path if path else 'the event'} no longer allows unknown fields",
            )


def _as_schema(node: Any) -> Schema:
    if node is True or node is None:
        return {}
    if node is False:
        return {"not": {}}
    if isinstance(node, dict):
        return node
    raise TypeError(f"not a JSON Schema: {node!r}")


def _types(schema: Schema) -> frozenset[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(declared)
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return frozenset(_json_type(value) for value in values)
    if "properties" in schema:
        return frozenset({"object"})
    return _ALL_TYPES


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _covers(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    """Every value of a type in ``narrow`` is a value of a type in ``wide``."""
    return all(kind in wide or (kind == "integer" and "number" in wide) for kind in narrow)


def _show_types(types: frozenset[str]) -> str:
    if types == _ALL_TYPES:
        return "any"
    order = ("string", "number", "integer", "boolean", "object", "array", "null")
    return "|".join(kind for kind in order if kind in types)


def _pair_renames(
    removed: Sequence[str],
    added: Sequence[str],
    old_props: Mapping[str, Any],
    new_props: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """A removed and an added field with the same schema are taken as a rename."""
    pairs: list[tuple[str, str]] = []
    free = list(added)
    for old_name in removed:
        for new_name in free:
            if _without_docs(old_props[old_name]) == _without_docs(new_props[new_name]):
                pairs.append((old_name, new_name))
                free.remove(new_name)
                break
    return pairs


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_docs(value)
            for key, value in node.items()
            if key not in {"title", "description", "examples", "$comment"}
        }
    if isinstance(node, list):
        return [_without_docs(item) for item in node]
    return node


def _sides(change: Change, mode: Mode) -> frozenset[str]:
    sides = set()
    if change.breaks_consumers and mode in (Mode.FORWARD, Mode.FULL):
        sides.add("consumers")
    if change.breaks_producers and mode in (Mode.BACKWARD, Mode.FULL):
        sides.add("producers")
    return frozenset(sides)


def _join_sides(sides: Iterable[str]) -> str:
    return " and ".join(side for side in ("consumers", "producers") if side in set(sides))


def _required_word(required: bool) -> str:
    return "required" if required else "optional"


def _comparable(before: Any, after: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(before, numbers)
        and isinstance(after, numbers)
        and not isinstance(before, bool)
        and not isinstance(after, bool)
    )


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _show_values(values: Sequence[Any]) -> str:
    return ", ".join(_show(value) for value in values)


def _plural(word: str, items: Sequence[Any]) -> str:
    return word if len(items) == 1 else f"{word}s"
