"""Every import of the package points down its layers (DESIGN.md), read from the source.

The modules are parsed, not imported: an import inside a function or under
``TYPE_CHECKING`` is a dependency all the same. The layers, lowest first::

    events < errors < transports < core < observability | outbox | contracts < testing < cli

``events`` and ``errors`` import nothing of the package; a transport imports neither
``events`` nor ``core``, and of the other transports only ``transports/base.py`` and
``transports/nats_connection/`` (so stan and jetstream never import each other). The
package face (``common_events/__init__.py``) sits on the core; the old import paths
``common_events.stan`` / ``common_events.monitor`` belong to the STAN transport and
``common_events.embedded`` to ``testing``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "common_events"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

# What each layer may import besides itself.
BELOW_CORE = frozenset({"events", "errors", "transports", "core"})
UPPER = frozenset({"observability", "outbox", "contracts", "migration"})
MAY_IMPORT: dict[str, frozenset[str]] = {
    "events": frozenset(),
    "errors": frozenset(),
    "transports": frozenset({"errors"}),
    "core": frozenset({"events", "errors", "transports"}),
    "face": BELOW_CORE,
    **{layer: BELOW_CORE | {"face"} for layer in UPPER},
    "testing": BELOW_CORE | UPPER | {"face"},
    "cli": BELOW_CORE | UPPER | {"face", "testing"},
}
# Parts every transport may use: the interface, the NATS connection layer, and the
# bounded-worker fallback of publish_many.
SHARED_TRANSPORT_UNITS = frozenset({"__init__", "base", "batch", "nats_connection"})
# Root modules kept as thin re-exports of a part that lives deeper.
RE_EXPORTS = {
    "stan": ("transports", "stan"),
    "monitor": ("transports", "stan"),
    "embedded": ("testing", "testing"),
}

NATS_ERROR_MODULES = ("nats.errors", "nats.js.errors", "nats.aio.errors")
NATS_CONNECTION = f"{PACKAGE}.transports.nats_connection"


@dataclass(frozen=True)
class Place:
    """A module's layer, and within transports/ which transport (or shared part)."""

    layer: str
    unit: str


@dataclass(frozen=True)
class Import:
    line: int
    target: str


def module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def place(module: str) -> Place | None:
    parts = module.split(".")[1:]
    if not parts:
        return Place("face", "face")
    top = parts[0]
    if top in RE_EXPORTS:
        layer, unit = RE_EXPORTS[top]
        return Place(layer, unit)
    if top == "transports":
        return Place("transports", parts[1] if len(parts) > 1 else "__init__")
    if top in MAY_IMPORT:
        return Place(top, top)
    return None


def resolve_relative(module: str, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_package(module):
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


def package_imports(module: str, tree: ast.AST) -> Iterator[Import]:
    """Every import of a module of this package, wherever it is in the file."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            source = (
                resolve_relative(module, node.level, node.module) if node.level else node.module
            )
            if source is None:
                continue
            for alias in node.names:
                # ``from common_events.testing import servers`` imports the module.
                candidate = f"{source}.{alias.name}"
                yield Import(node.lineno, candidate if candidate in MODULES else source)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(node.lineno, node.args[0].value)


def owning_module(target: str) -> str | None:
    """The package module an import names (``a.b.Name`` -> ``a.b``), if any."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in MODULES:
            return name
        parts.pop()
    return None


def violation(importer: Place, target: Place) -> str | None:
    if importer.layer == target.layer:
        if importer.layer != "transports" or target.unit in (
            SHARED_TRANSPORT_UNITS | {importer.unit}
        ):
            return None
        return f"sideways: transport {importer.unit!r} imports transport {target.unit!r}"
    if target.layer in MAY_IMPORT[importer.layer]:
        return None
    if target.layer in UPPER and importer.layer in UPPER:
        return f"sideways: {importer.layer} imports {target.layer}"
    return f"{importer.layer} imports {target.layer}"


def by_file_and_line(problem: str) -> tuple[str, int]:
    file, line, _ = problem.split(":", 2)
    return file, int(line)


def relative(path: Path) -> str:
    return str(path.relative_to(PACKAGE_DIR.parent))


def test_every_module_has_a_layer() -> None:
    unplaced = [relative(path) for module, path in MODULES.items() if place(module) is None]
    assert not unplaced, f"modules outside the layers of DESIGN.md: {unplaced}"


def test_every_import_points_down_the_layers() -> None:
    problems: list[str] = []
    for module, path in MODULES.items():
        importer = place(module)
        if importer is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for found in package_imports(module, tree):
            if found.target != PACKAGE and not found.target.startswith(f"{PACKAGE}."):
                continue
            target_module = owning_module(found.target)
            target = place(target_module) if target_module is not None else None
            if target is None:
                continue  # a missing module fails at import time, not here
            why = violation(importer, target)
            if why is not None:
                problems.append(f"{relative(path)}:{found.line}: {found.target} ({why})")
    if problems:
        pytest.fail(
            "imports that do not point down:\n"
            + "\n".join(sorted(problems, key=by_file_and_line)),
            False,
        )


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted(node.value)
        return f"{owner}.{node.attr}" if owner is not None else None
    return None


def names_nats_errors(name: str) -> bool:
    return any(name == errors or name.startswith(f"{errors}.") for errors in NATS_ERROR_MODULES)


def nats_error_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    nodes = list(ast.walk(tree))
    # ``nats.errors.TimeoutError`` is one use, not also ``nats.errors`` inside it.
    inner = {id(node.value) for node in nodes if isinstance(node, ast.Attribute)}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if names_nats_errors(alias.name):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for alias in node.names:
                if names_nats_errors(f"{node.module}.{alias.name}"):
                    yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Attribute) and id(node) not in inner:
            name = dotted(node)
            if name is not None and names_nats_errors(name):
                yield node.lineno, name


def test_nats_errors_are_translated_only_in_nats_connection() -> None:
    problems: list[str] = []
    for module, path in MODULES.items():
        if module == NATS_CONNECTION or module.startswith(f"{NATS_CONNECTION}."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, use in nats_error_uses(tree):
            problems.append(f"{relative(path)}:{line}: {use}")
    if problems:
        pytest.fail(
            "nats-py errors are mapped once, in transports/nats_connection/errors.py; "
            "found elsewhere:\n" + "\n".join(sorted(problems, key=by_file_and_line)),
            False,
        )


# The checker itself, on made-up source: it must see what it is there to see.

LAZY_AND_RELATIVE = """
from typing import TYPE_CHECKING
from . import protocol
from ...core import bus
if TYPE_CHECKING:
    from common_events.events import Subjects
def later():
    import common_events.transports.jetstream
    importlib.import_module("common_events.core.listener")
"""


def test_the_checker_reads_lazy_relative_and_type_checking_imports() -> None:
    module = "common_events.transports.stan.transport"
    found = [(i.line, i.target) for i in package_imports(module, ast.parse(LAZY_AND_RELATIVE))]
    assert sorted(found) == [
        (2, "typing"),
        (3, "common_events.transports.stan.protocol"),
        (4, "common_events.core.bus"),
        (6, "common_events.events"),
        (8, "common_events.transports.jetstream"),
        (9, "common_events.core.listener"),
    ]
    importer = place(module)
    assert importer == Place("transports", "stan")
    verdicts = {
        target: violation(importer, there)
        for target in (
            "common_events.events",
            "common_events.core",
            "common_events.transports.jetstream",
            "common_events.transports.base",
            "common_events.transports.nats_connection",
            "common_events.errors",
        )
        if (there := place(target)) is not None
    }
    assert verdicts == {
        "common_events.events": "transports imports events",
        "common_events.core": "transports imports core",
        "common_events.transports.jetstream": (
            "sideways: transport 'stan' imports transport 'jetstream'"
        ),
        "common_events.transports.base": None,
        "common_events.transports.nats_connection": None,
        "common_events.errors": None,
    }


def test_the_checker_keeps_events_and_errors_at_the_bottom() -> None:
    events, errors = Place("events", "events"), Place("errors", "errors")
    assert violation(events, errors) is not None
    assert violation(errors, events) is not None
    assert violation(Place("contracts", "contracts"), Place("outbox", "outbox")) is not None
    assert violation(Place("testing", "testing"), Place("cli", "cli")) is not None
    assert violation(Place("cli", "cli"), Place("testing", "testing")) is None


def test_the_checker_sees_nats_errors_however_they_are_reached() -> None:
    source = """
import nats.errors
from nats.js import errors as js_errors
from nats.errors import TimeoutError as NatsTimeout
try:
    pass
except nats.js.errors.NotFoundError:
    pass
"""
    uses = [use for _, use in nats_error_uses(ast.parse(source))]
    assert uses == [
        "import nats.errors",
        "from nats.js import errors",
        "from nats.errors import TimeoutError",
        "nats.js.errors.NotFoundError",
    ]
