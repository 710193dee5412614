"""The npm package of the events, for the Node services, generated from the models.

``common-events schema npm DIR --name @scope/name`` writes a package that a Node service
installs as it installs any other: ``package.json`` at the Python package's version,
CommonJS and ES module builds with an ``exports`` map, ``Subjects`` and ``OrderStatus``
as real JavaScript objects, a declaration of every event, the JSON Schemas, and a
validator per event on ``ajv``. Everything that names an event is made from the
schemas, so a new event model appears in the package with no hand edit; the runtime
around the validators is the fixed text in ``npm_template/``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from common_events.contracts.schema import (
    Schema,
    dumps,
    export_schemas,
    member_name,
    schema_file_name,
)
from common_events.contracts.typescript import (
    event_subjects,
    interface_name,
    typescript_declarations,
)
from common_events.events.subjects import OrderStatus

logger = logging.getLogger(__name__)

GENERATED_BY = "common-events schema npm"
"""The ``generatedBy`` field of the package.json; marks a directory this module wrote."""

AJV_VERSION = "^8.17.1"
"""The validator the package depends on (ajv's draft 2020-12 build)."""

NODE_VERSION = ">=18"

CJS_ENTRY = "dist/cjs/index.cjs"
CJS_TYPES = "dist/cjs/index.d.cts"
ESM_ENTRY = "dist/esm/index.mjs"
ESM_TYPES = "dist/esm/index.d.mts"
SCHEMA_DIRECTORY = "schemas"

# npm's rules for a package name: lower case, URL-safe, at most 214 characters, an
# optional @scope/ in front.
_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
_PYTHON_VERSION = re.compile(
    r"^(?P<release>\d+\.\d+\.\d+)"
    r"(?:(?P<pre>a|b|rc)(?P<pre_number>\d+))?"
    r"(?P<post>\.post\d+)?"
    r"(?:\.dev(?P<dev>\d+))?$"
)
_PRE_RELEASE = {"a": "alpha", "b": "beta", "rc": "rc"}


class NpmPackageError(ValueError):
    """The package cannot be written as asked (a bad name, version, URL or directory)."""


@dataclass(frozen=True, slots=True)
class NpmPackage:
    """A generated npm package: its name, version and every file's text."""

    name: str
    version: str
    """The npm (SemVer) spelling of ``python_version``."""
    python_version: str
    registry: str | None
    files: Mapping[str, str] = field(repr=False)
    """Path inside the package (``dist/cjs/index.cjs``) -> file text."""

    @property
    def tarball_name(self) -> str:
        """The file ``npm pack`` writes: ``ticketing-common-events-0.1.0.tgz``."""
        return f"{self.name.removeprefix('@').replace('/', '-')}-{self.version}.tgz"


def npm_version(python_version: str) -> str:
    """The npm version of a Python release: ``1.2.0`` -> ``1.2.0``, ``1.2.0rc1`` ->
    ``1.2.0-rc.1``, ``1.2.0.dev3`` -> ``1.2.0-dev.3``.

    SemVer has no post-release (a version after ``1.2.0`` that is not ``1.2.1``); such a
    version is refused rather than published out of order.
    """
    match = _PYTHON_VERSION.fullmatch(python_version)
    if match is None:
        raise NpmPackageError(
            f"version {python_version!r} is not MAJOR.MINOR.PATCH[aN|bN|rcN][.devN]"
        )
    if match["post"]:
        raise NpmPackageError(
            f"version {python_version!r} is a post-release, which npm cannot order "
            "after its release; release the next patch version instead"
        )
    labels = []
    if match["pre"]:
        labels += [_PRE_RELEASE[match["pre"]], match["pre_number"]]
    if match["dev"] is not None:
        labels += ["dev", match["dev"]]
    return match["release"] + ("-" + ".".join(labels) if labels else "")


def check_package_name(name: str) -> str:
    """``name`` if npm accepts it as a package name (``@ticketing/common-events``)."""
    if len(name) > 214 or not _NAME.fullmatch(name):
        raise NpmPackageError(
            f"{name!r} is not an npm package name: lower case letters, digits, '-', '.', "
            "'_' and '~', with an optional @scope/ (e.g. @ticketing/common-events)"
        )
    return name


def check_registry_url(url: str) -> str:
    """An http(s) registry URL without credentials, ending in ``/``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NpmPackageError(f"{url!r} is not an http(s) URL of an npm registry")
    if parts.username is not None or parts.password is not None:
        # The URL lands in package.json, which is published: no credentials in it.
        raise NpmPackageError(
            "the registry URL must not carry credentials; npm reads them from .npmrc"
        )
    return url if url.endswith("/") else url + "/"


def npm_package(
    name: str,
    *,
    python_version: str,
    registry: str | None = None,
    schemas: Mapping[str, Schema] | None = None,
    enums: tuple[type[Enum], ...] = (OrderStatus,),
) -> NpmPackage:
    """The package of ``schemas`` (default: today's models) as ``name``."""
    schemas = export_schemas() if schemas is None else schemas
    name = check_package_name(name)
    version = npm_version(python_version)
    registry = check_registry_url(registry) if registry is not None else None
    declarations = _declarations(schemas, python_version, enums)
    files = {
        "package.json": _package_json(name, version, python_version, registry),
        "README.md": _readme(name, version, python_version, registry),
        CJS_ENTRY: _javascript(schemas, python_version, enums, esm=False),
        CJS_TYPES: declarations,
        ESM_ENTRY: _javascript(schemas, python_version, enums, esm=True),
        ESM_TYPES: declarations,
    }
    for subject, schema in schemas.items():
        files[f"{SCHEMA_DIRECTORY}/{schema_file_name(subject)}"] = dumps(schema)
    return NpmPackage(name, version, python_version, registry, files)


def write_npm_package(directory: Path, package: NpmPackage) -> list[Path]:
    """Write ``package`` into ``directory``: a new or empty one, or one this module
    wrote before (its generated files are replaced; others, like ``node_modules``,
    are kept)."""
    if directory.exists() and not directory.is_dir():
        raise NpmPackageError(f"{directory} is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not _written_here(directory / "package.json"):
            raise NpmPackageError(
                f"{directory} is not empty and holds no package written by "
                f"`{GENERATED_BY}`; choose a new or empty directory"
            )
        for generated in ("dist", SCHEMA_DIRECTORY):
            shutil.rmtree(directory / generated, ignore_errors=True)
    written = []
    for relative, text in package.files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    logger.info("wrote %s %s to %s", package.name, package.version, directory)
    return written


def _written_here(package_json: Path) -> bool:
    try:
        manifest = json.loads(package_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generatedBy") == GENERATED_BY


def _template(name: str) -> str:
    return (resources.files("common_events.contracts") / "npm_template" / name).read_text(
        encoding="utf-8"
    )


def _package_json(name: str, version: str, python_version: str, registry: str | None) -> str:
    manifest: dict[str, object] = {
        "name": name,
        "version": version,
        "description": (
            "The events of the ticketing services: subjects, event types, JSON Schemas "
            f"and validators, generated from common-events {python_version}."
        ),
        "license": "MIT",
        "keywords": ["ticketing", "events", "nats", "nats-streaming", "json-schema"],
        "generatedBy": GENERATED_BY,
        "type": "commonjs",
        "main": f"./{CJS_ENTRY}",
        "module": f"./{ESM_ENTRY}",
        "types": f"./{CJS_TYPES}",
        "exports": {
            ".": {
                "import": {"types": f"./{ESM_TYPES}", "default": f"./{ESM_ENTRY}"},
                "require": {"types": f"./{CJS_TYPES}", "default": f"./{CJS_ENTRY}"},
            },
            f"./{SCHEMA_DIRECTORY}/*.json": f"./{SCHEMA_DIRECTORY}/*.json",
            "./package.json": "./package.json",
        },
        "files": ["dist", SCHEMA_DIRECTORY],
        "sideEffects": False,
        "engines": {"node": NODE_VERSION},
        "dependencies": {"ajv": AJV_VERSION},
    }
    if registry is not None:
        manifest["publishConfig"] = {"registry": registry}
    return json.dumps(manifest, indent=2) + "\n"


def _readme(name: str, version: str, python_version: str, registry: str | None) -> str:
    if registry is None:
        note = ""
    else:
        scope = name.split("/")[0] if name.startswith("@") else None
        line = f"{scope}:registry={registry}" if scope else f"registry={registry}"
        note = (
            f"\nIt is published to {registry}; a project's `.npmrc` finds it with\n"
            f"`{line}` (and the registry's token).\n"
        )
    text = _template("README.md")
    for key, value in {
        "name": name,
        "version": version,
        "python_version": python_version,
        "registry_note": note,
    }.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _declarations(
    schemas: Mapping[str, Schema], python_version: str, enums: tuple[type[Enum], ...]
) -> str:
    lines = [
        typescript_declarations(
            schemas, version=python_version, enums=enums, written_by=GENERATED_BY
        ),
        _template("api.d.ts"),
    ]
    for subject in event_subjects(schemas):
        event = interface_name(subject, schemas[subject])
        lines.append(f"/** Checks the data of an event on `{subject}`. */")
        lines.append(
            f'export declare const validate{member_name(subject)}: Validator<{event}["data"]>;'
        )
    return "\n".join(lines) + "\n"


def _javascript(
    schemas: Mapping[str, Schema],
    python_version: str,
    enums: tuple[type[Enum], ...],
    *,
    esm: bool,
) -> str:
    subjects = event_subjects(schemas)
    names = {
        "Subjects": [(member_name(subject), subject) for subject in subjects],
        **{
            enum.__name__: [(member_name(str(m.value)), str(m.value)) for m in enum]
            for enum in enums
        },
    }
    validator_names = {f"validate{member_name(subject)}": subject for subject in subjects}
    exported = [
        *names,
        "SUBJECTS",
        "schemas",
        "validators",
        "parseEventData",
        "InvalidEventError",
        *validator_names,
    ]
    lines = [
        f"// The events of common-events {python_version}, written from its event models",
        f"// by `{GENERATED_BY}`. Do not edit: change the models and write this file again.",
    ]
    if esm:
        lines.append('import Ajv2020 from "ajv/dist/2020.js";')
    else:
        lines.insert(0, '"use strict";')
        lines.append('const Ajv2020 = require("ajv/dist/2020");')
    lines.append("")
    for enum_name, members in names.items():
        lines.append(f"const {enum_name} = Object.freeze({{")
        lines += [f"  {member}: {json.dumps(value)}," for member, value in members]
        lines.append("});")
        lines.append("")
    ordered = {subject: schemas[subject] for subject in subjects}
    lines.append(f"const SCHEMAS = {json.dumps(ordered, indent=2, ensure_ascii=False)};")
    lines.append("")
    lines.append(_template("runtime.js").rstrip("\n"))
    lines.append("")
    lines += [
        f"const {name} = validators[{json.dumps(subject)}];"
        for name, subject in validator_names.items()
    ]
    lines.append("")
    if esm:
        lines.append("export {")
        lines += [f"  {name}," for name in exported]
        lines.append("};")
    else:
        lines += [f"exports.{name} = {name};" for name in exported]
    return "\n".join(lines) + "\n"
