"""``common-events schema``: export the JSON Schemas, check compatibility, write TypeScript
and the npm package of the events."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from common_events import __version__
from common_events.contracts.compatibility import Mode, check_compatibility
from common_events.contracts.npm import NpmPackageError, npm_package, write_npm_package
from common_events.contracts.schema import Schema, export_schemas, read_schemas, write_schemas
from common_events.contracts.snapshots import load_release, release_plan, released_versions
from common_events.contracts.typescript import typescript_declarations, typescript_module

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "schema",
        help="JSON Schemas of the events: export, compatibility check, TypeScript, npm",
        description=(
            "JSON Schemas (draft 2020-12) of the events' wire JSON: export them, check "
            "today's models against released schemas, write TypeScript, build the npm "
            "package for the Node services."
        ),
    )
    commands = parser.add_subparsers(dest="schema_command", metavar="ACTION", required=True)

    export = commands.add_parser(
        "export",
        help="write one JSON Schema per subject into DIR (ticket.created.json, ...)",
        description=(
            "Write one JSON Schema (draft 2020-12) per subject into DIR, named after the "
            "subject (ticket.created.json, ...), and print the paths written. A release "
            "exports into common_events/contracts/schemas/VERSION."
        ),
    )
    export.add_argument(
        "directory",
        metavar="DIR",
        type=Path,
        help="directory to write into (made if missing; files of the same name replaced)",
    )
    export.set_defaults(func=run_export)

    check = commands.add_parser(
        "check",
        help="compare today's models with released schemas; exit 1 on a breaking change",
        description=(
            "Compare today's event models with released schemas and list every change "
            "with its verdict. 'consumers on X' are services on X that receive what this "
            "version sends; 'producers on X' are services on X whose events this version "
            "receives."
        ),
    )
    check.add_argument(
        "--against",
        metavar="VERSION|DIR",
        action="append",
        help=(
            "a released version or a directory of schemas; repeat for several "
            "(default: every released version, or the latest with --no-transitive)"
        ),
    )
    check.add_argument(
        "--mode",
        choices=[mode.value for mode in Mode],
        default=Mode.FULL.value,
        help="backward: this version reads older events; forward: older versions read "
        "this version's events; full (default): both",
    )
    check.add_argument(
        "--transitive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check against every released version (default), not only the latest",
    )
    check.add_argument(
        "--release",
        metavar="VERSION",
        help=(
            "check that VERSION may be released with today's models: against the "
            "earlier releases of its major version, and its own snapshot; a breaking "
            "change needs a new major version (of the Python and the npm package)"
        ),
    )
    check.set_defaults(func=run_check)

    typescript = commands.add_parser(
        "typescript",
        help="write TypeScript declarations (.d.ts) of the events, or a .ts module",
        description=(
            "TypeScript of the events. A declaration file (.d.ts, the default) declares "
            "the enums, whose values the npm package provides; a module (--module, or "
            "an output file ending in .ts but not .d.ts) defines them."
        ),
    )
    typescript.add_argument(
        "-o", "--output", metavar="FILE", type=Path, help="write here instead of stdout"
    )
    typescript.add_argument(
        "--module",
        action="store_true",
        help="write a module with the enums' values instead of declarations",
    )
    typescript.set_defaults(func=run_typescript)

    npm = commands.add_parser(
        "npm",
        help="write the npm package of the events into DIR",
        description=(
            "Write a complete npm package of the events into DIR (new, empty, or "
            "written by this command before): package.json at this package's version, "
            "CommonJS and ES module builds, the enums as JavaScript, declarations, the "
            "JSON Schemas and a validator per event. Publish it with npm publish DIR."
        ),
    )
    npm.add_argument(
        "directory",
        metavar="DIR",
        type=Path,
        help="directory to write the package into (new, empty, or written here before)",
    )
    npm.add_argument(
        "--name", required=True, help="the package's name, e.g. @ticketing/common-events"
    )
    npm.add_argument(
        "--registry",
        metavar="URL",
        help="the registry it is published to (package.json publishConfig)",
    )
    npm.set_defaults(func=run_npm)


def run_export(args: argparse.Namespace) -> int:
    paths = write_schemas(args.directory, export_schemas())
    for path in paths:
        print(path)
    return 0


def run_check(args: argparse.Namespace) -> int:
    if args.release is not None:
        if args.against:
            print(
                "common-events schema check: --release and --against exclude each other",
                file=sys.stderr,
            )
            return 2
        return _check_release(args.release, Mode(args.mode))
    try:
        baselines = _baselines(args.against, transitive=args.transitive)
    except (LookupError, ValueError, OSError) as error:
        print(f"common-events schema check: {error}", file=sys.stderr)
        return 2
    if not baselines:
        print("no released schemas to check against")
        return 0
    report = check_compatibility(export_schemas(), baselines, Mode(args.mode))
    for line in report.lines():
        print(line)
    return 0 if report.compatible else 1


def _check_release(version: str, mode: Mode) -> int:
    try:
        plan = release_plan(version, export_schemas(), mode=mode)
    except (LookupError, ValueError) as error:
        print(f"common-events schema check: {error}", file=sys.stderr)
        return 2
    for line in plan.lines():
        print(line)
    return 0 if plan.allowed else 1


def run_typescript(args: argparse.Namespace) -> int:
    output: Path | None = args.output
    as_module = args.module or (
        output is not None and output.suffix == ".ts" and not output.name.endswith(".d.ts")
    )
    write = typescript_module if as_module else typescript_declarations
    text = write(version=__version__)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(args.output)
    return 0


def run_npm(args: argparse.Namespace) -> int:
    try:
        package = npm_package(args.name, python_version=__version__, registry=args.registry)
        write_npm_package(args.directory, package)
    except NpmPackageError as error:
        print(f"common-events schema npm: {error}", file=sys.stderr)
        return 2
    print(f"wrote {package.name} {package.version} to {args.directory}")
    return 0


def _baselines(against: list[str] | None, *, transitive: bool) -> dict[str, dict[str, Schema]]:
    if against:
        return {label: _load(label) for label in against}
    versions = released_versions()
    if not transitive:
        versions = versions[-1:]
    return {version: load_release(version) for version in versions}


def _load(label: str) -> dict[str, Schema]:
    path = Path(label)
    if path.is_dir():
        return read_schemas(path)
    if label in released_versions():
        return load_release(label)
    known = ", ".join(released_versions()) or "none"
    raise LookupError(f"{label!r} is neither a directory nor a released version ({known})")
