"""``schema npm``: the files of the generated package, before Node ever sees them.

tests/typescript/ installs, compiles and runs the package for real; these check what
the generator writes and refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from common_events import EVENT_TYPES, __version__
from common_events.cli.main import main
from common_events.contracts.npm import (
    CJS_ENTRY,
    CJS_TYPES,
    ESM_ENTRY,
    ESM_TYPES,
    NpmPackageError,
    check_package_name,
    check_registry_url,
    npm_package,
    npm_version,
    write_npm_package,
)
from common_events.contracts.schema import export_schemas, read_schemas
from common_events.contracts.typescript import typescript_declarations
from common_events.events import Event, Subjects
from common_events.events.fields import Id

NAME = "@ticketing/common-events"


class TicketDeletedEvent(Event):
    """A ticket was withdrawn from sale."""

    # Not a member of Subjects: a new event, as a change to the models would add it.
    subject: ClassVar[Subjects] = "ticket:deleted"  # type: ignore[assignment]

    id: Id


def manifest(files: dict[str, str] | Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(files["package.json"])
    return loaded


@pytest.mark.parametrize(
    ("python", "npm"),
    [
        ("0.1.0", "0.1.0"),
        ("1.2.3", "1.2.3"),
        ("2.0.0rc1", "2.0.0-rc.1"),
        ("2.0.0a2", "2.0.0-alpha.2"),
        ("2.0.0b3", "2.0.0-beta.3"),
        ("2.0.0.dev4", "2.0.0-dev.4"),
        ("2.0.0rc1.dev5", "2.0.0-rc.1.dev.5"),
    ],
)
def test_the_npm_version_is_the_python_version_in_semver(python: str, npm: str) -> None:
    assert npm_version(python) == npm


@pytest.mark.parametrize("python", ["1.2.3.post1", "1.2", "v1.2.3", "1.2.3-rc.1"])
def test_versions_npm_cannot_order_are_refused(python: str) -> None:
    with pytest.raises(NpmPackageError):
        npm_version(python)


@pytest.mark.parametrize("name", [NAME, "common-events", "@a/b.c_d~e-f"])
def test_package_names_npm_accepts(name: str) -> None:
    assert check_package_name(name) == name


@pytest.mark.parametrize(
    "name", ["@Ticketing/common-events", "common events", "@ticketing/", "/x", ".x", "a" * 215]
)
def test_package_names_npm_refuses(name: str) -> None:
    with pytest.raises(NpmPackageError, match="not an npm package name"):
        check_package_name(name)


def test_registry_urls() -> None:
    assert check_registry_url("https://npm.internal.example") == "https://npm.internal.example/"
    assert check_registry_url("http://127.0.0.1:4873/npm/") == "http://127.0.0.1:4873/npm/"
    with pytest.raises(NpmPackageError, match="credentials"):
        check_registry_url("https://releaser:secret@npm.internal.example/")
    with pytest.raises(NpmPackageError, match="http"):
        check_registry_url("ftp://npm.internal.example/")


def test_package_json_at_the_python_version_with_both_builds() -> None:
    package = npm_package(NAME, python_version="1.4.0", registry="https://npm.internal.example")
    data = manifest(package.files)

    assert data["name"] == NAME
    assert data["version"] == "1.4.0"
    assert data["publishConfig"] == {"registry": "https://npm.internal.example/"}
    assert data["exports"]["."] == {
        "import": {"types": f"./{ESM_TYPES}", "default": f"./{ESM_ENTRY}"},
        "require": {"types": f"./{CJS_TYPES}", "default": f"./{CJS_ENTRY}"},
    }
    assert data["main"] == f"./{CJS_ENTRY}"
    assert data["types"] == f"./{CJS_TYPES}"
    assert set(data["dependencies"]) == {"ajv"}
    assert package.tarball_name == "ticketing-common-events-1.4.0.tgz"
    assert "publishConfig" not in manifest(npm_package(NAME, python_version="1.4.0").files)


def test_the_package_holds_the_schemas_and_the_declarations() -> None:
    package = npm_package(NAME, python_version=__version__)
    schemas = export_schemas()

    for subject, schema in schemas.items():
        file = f"schemas/{subject.replace(':', '.')}.json"
        assert json.loads(package.files[file]) == schema
    declarations = package.files[CJS_TYPES]
    assert package.files[ESM_TYPES] == declarations
    assert declarations.startswith(
        typescript_declarations(version=__version__, written_by="common-events schema npm").rstrip(
            "\n"
        )
    )
    assert "const enum" not in declarations
    assert "export declare enum Subjects {" in declarations
    assert 'export declare const validateOrderCreated: Validator<OrderCreatedEvent["data"]>;' in (
        declarations
    )


def test_both_builds_define_the_enums_and_export_the_same_names() -> None:
    package = npm_package(NAME, python_version=__version__)
    cjs = package.files[CJS_ENTRY]
    esm = package.files[ESM_ENTRY]

    assert 'const Ajv2020 = require("ajv/dist/2020");' in cjs
    assert 'import Ajv2020 from "ajv/dist/2020.js";' in esm
    assert "require(" not in esm
    assert "\nimport " not in cjs
    for text in (cjs, esm):
        assert '  TicketCreated: "ticket:created",' in text
        assert '  AwaitingPayment: "awaiting:payment",' in text
    cjs_names = [line.split(" = ")[0].removeprefix("exports.") for line in cjs.splitlines()]
    cjs_names = [name for name in cjs_names if name.isidentifier() and f"exports.{name}" in cjs]
    esm_block = esm[esm.rindex("export {") :]
    esm_names = [line.strip().rstrip(",") for line in esm_block.splitlines()[1:-1]]
    assert cjs_names == esm_names
    assert {"Subjects", "OrderStatus", "parseEventData", "validatePaymentCreated"} <= set(esm_names)


def test_a_new_event_appears_with_no_hand_edit() -> None:
    schemas = export_schemas({**EVENT_TYPES, "ticket:deleted": TicketDeletedEvent})  # type: ignore[dict-item]

    package = npm_package(NAME, python_version=__version__, schemas=schemas)

    assert '  TicketDeleted: "ticket:deleted",' in package.files[CJS_ENTRY]
    assert "const validateTicketDeleted = validators[" in package.files[ESM_ENTRY]
    declarations = package.files[ESM_TYPES]
    assert '  TicketDeleted = "ticket:deleted",' in declarations
    assert "export interface TicketDeletedEvent {" in declarations
    assert "export declare const validateTicketDeleted:" in declarations
    assert "schemas/ticket.deleted.json" in package.files


def test_writing_into_a_new_directory_and_again_over_it(tmp_path: Path) -> None:
    target = tmp_path / "npm"
    first = npm_package(NAME, python_version="1.0.0")
    write_npm_package(target, first)
    (target / "node_modules").mkdir()
    (target / "schemas" / "stale.json").write_text("{}")

    write_npm_package(target, npm_package(NAME, python_version="1.1.0"))

    assert manifest({"package.json": (target / "package.json").read_text()})["version"] == "1.1.0"
    assert (target / "node_modules").is_dir()  # not ours: kept
    assert not (target / "schemas" / "stale.json").exists()  # ours: replaced
    assert read_schemas(target / "schemas") == dict(sorted(export_schemas().items()))


def test_a_directory_of_something_else_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"name": "my-service"}')

    with pytest.raises(NpmPackageError, match="not empty"):
        write_npm_package(tmp_path, npm_package(NAME, python_version="1.0.0"))

    assert (tmp_path / "package.json").read_text() == '{"name": "my-service"}'


def test_schema_npm_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "package"

    status = main(
        ["schema", "npm", str(target), "--name", NAME, "--registry", "http://127.0.0.1:4873"]
    )

    assert status == 0
    assert capsys.readouterr().out == f"wrote {NAME} {npm_version(__version__)} to {target}\n"
    written = {
        str(path.relative_to(target)): path.read_text()
        for path in target.rglob("*")
        if path.is_file()
    }
    expected = npm_package(NAME, python_version=__version__, registry="http://127.0.0.1:4873")
    assert written == dict(expected.files)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--name", "Common Events"], "not an npm package name"),
        (["--name", NAME, "--registry", "https://u:p@npm.example/"], "credentials"),
    ],
)
def test_schema_npm_command_refuses(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "npm", str(tmp_path / "package"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "package").exists()
