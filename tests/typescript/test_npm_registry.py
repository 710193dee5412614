"""The generated package on a real private registry: published with a login, refused
with a wrong one, never replaced, and installed from the registry alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from common_events import __version__
from common_events.contracts.npm import npm_package, npm_version, write_npm_package
from tests.typescript.conftest import Published
from tests.typescript.npm import (
    PACKAGE_NAME,
    USERNAME,
    NpmRegistry,
    output_of,
    run,
)
from tests.typescript.service import NodeApp

pytestmark = pytest.mark.slow


def test_the_package_is_published_at_the_python_version(
    npm_registry: NpmRegistry, published_package: Published
) -> None:
    assert npm_registry.stored_versions() == [npm_version(__version__)]
    tarball = f"common-events-{npm_version(__version__)}.tgz"
    assert list(npm_registry.stored()) == [tarball]


def test_a_wrong_password_is_refused_and_nothing_is_stored(
    npm_registry: NpmRegistry, published_package: Published, tmp_path: Path
) -> None:
    before = npm_registry.stored()
    newer = npm_package(PACKAGE_NAME, python_version="99.0.0", registry=npm_registry.url)
    write_npm_package(tmp_path / "package", newer)
    environment = npm_registry.npmrc(
        tmp_path / "home", npm_registry.password_credentials(USERNAME, "wrong password")
    )

    result = run(["npm", "publish", tmp_path / "package"], cwd=tmp_path, env=environment)

    assert result.returncode != 0, output_of(result)
    assert "E401" in result.stderr or "E403" in result.stderr, output_of(result)
    assert npm_registry.login(USERNAME, "wrong password") is None
    assert npm_registry.login("intruder", "wrong password") is None  # no registration
    assert npm_registry.stored() == before
    assert "99.0.0" not in npm_registry.stored_versions()


def test_the_right_password_publishes_too(
    npm_registry: NpmRegistry, published_package: Published, tmp_path: Path
) -> None:
    # What a CI job without a token does: npm sends the password as basic auth.
    prerelease = npm_package(PACKAGE_NAME, python_version="0.0.1rc1", registry=npm_registry.url)
    write_npm_package(tmp_path / "package", prerelease)
    environment = npm_registry.npmrc(
        tmp_path / "home",
        npm_registry.password_credentials(USERNAME, "correct horse battery staple"),
    )

    result = run(
        ["npm", "publish", "--tag", "next", tmp_path / "package"], cwd=tmp_path, env=environment
    )

    assert result.returncode == 0, output_of(result)
    assert "0.0.1-rc.1" in npm_registry.stored_versions()


def test_a_published_version_is_never_replaced(
    npm_registry: NpmRegistry, npm_token: str, published_package: Published, tmp_path: Path
) -> None:
    before = npm_registry.stored()
    environment = npm_registry.npmrc(tmp_path, npm_registry.token_credentials(npm_token))
    changed = published_package.directory.parent / "changed"
    write_npm_package(
        changed, npm_package(PACKAGE_NAME, python_version=__version__, registry=npm_registry.url)
    )
    (changed / "README.md").write_text("something else\n")

    result = run(["npm", "publish", changed], cwd=tmp_path, env=environment)

    assert result.returncode != 0
    # npm itself refuses once it sees the version in the registry's metadata; an older
    # npm sends the tarball and the registry answers 409 (EPUBLISHCONFLICT).
    assert re.search(
        r"cannot publish over the previously published versions|EPUBLISHCONFLICT", result.stderr
    ), output_of(result)
    assert npm_registry.stored() == before


def test_reading_the_private_scope_needs_a_login(
    npm_registry: NpmRegistry, npm_token: str, published_package: Published, tmp_path: Path
) -> None:
    anonymous = npm_registry.npmrc(tmp_path / "anonymous")
    logged_in = npm_registry.npmrc(tmp_path / "user", npm_registry.token_credentials(npm_token))
    spec = f"{PACKAGE_NAME}@{published_package.version}"

    refused = run(["npm", "view", spec, "version"], env=anonymous, timeout=60)
    allowed = run(["npm", "view", spec, "version", "--json"], env=logged_in, timeout=60)

    assert refused.returncode != 0
    assert "E401" in refused.stderr or "E403" in refused.stderr, output_of(refused)
    assert allowed.returncode == 0, output_of(allowed)
    assert json.loads(allowed.stdout) == published_package.version


def test_the_fresh_project_installed_everything_from_the_private_registry(
    npm_registry: NpmRegistry, node_app: NodeApp, published_package: Published
) -> None:
    lock = json.loads((node_app.directory / "package-lock.json").read_text())
    packages = {path: entry for path, entry in lock["packages"].items() if path}
    installed = packages[f"node_modules/{PACKAGE_NAME}"]

    assert installed["version"] == published_package.version
    assert installed["dependencies"] == {"ajv": "^8.17.1"}
    assert "node_modules/ajv" in packages
    for path, entry in packages.items():
        assert entry["resolved"].startswith(npm_registry.url), (path, entry["resolved"])
    manifest = json.loads(
        (node_app.directory / "node_modules" / PACKAGE_NAME / "package.json").read_text()
    )
    assert manifest["version"] == published_package.version
    assert sorted(
        str(path.relative_to(node_app.directory / "node_modules" / PACKAGE_NAME))
        for path in (node_app.directory / "node_modules" / PACKAGE_NAME).rglob("*")
        if path.is_file()
    ) == sorted(npm_package(PACKAGE_NAME, python_version=__version__).files)


def test_require_and_import_load_their_own_build(node_app: NodeApp) -> None:
    required = run(
        ["node", "-p", f"require.resolve('{PACKAGE_NAME}')"],
        cwd=node_app.directory,
        timeout=60,
    )
    imported = run(
        [
            "node",
            "--input-type=module",
            "-e",
            f"console.log(import.meta.resolve('{PACKAGE_NAME}'))",
        ],
        cwd=node_app.directory,
        timeout=60,
    )

    assert required.stdout.strip().endswith("dist/cjs/index.cjs"), output_of(required)
    assert imported.stdout.strip().endswith("dist/esm/index.mjs"), output_of(imported)


def test_a_plain_node_service_reads_the_enums_and_the_schemas(node_app: NodeApp) -> None:
    script = (
        f"const events = require('{PACKAGE_NAME}');"
        f"const schema = require('{PACKAGE_NAME}/schemas/order.created.json');"
        "console.log(JSON.stringify({subject: events.Subjects.OrderCreated,"
        " status: events.OrderStatus.AwaitingPayment, subjects: events.SUBJECTS,"
        " title: schema.title, same: events.schemas['order:created'].title === schema.title,"
        " frozen: Object.isFrozen(events.Subjects)}))"
    )

    result = run(["node", "-e", script], cwd=node_app.directory, timeout=60)

    assert result.returncode == 0, output_of(result)
    assert json.loads(result.stdout) == {
        "subject": "order:created",
        "status": "awaiting:payment",
        "subjects": [
            "ticket:created",
            "ticket:updated",
            "order:created",
            "order:cancelled",
            "expiration:complete",
            "payment:created",
        ],
        "title": "OrderCreatedEvent",
        "same": True,
        "frozen": True,
    }
