"""Session fixtures: the Node tools, a private npm registry, the generated package
published to it, and a fresh Node project that installed it from there alone.

Without node and npm the tests skip, or fail under ``COMMON_EVENTS_REQUIRE_SERVERS=1``;
tests/typescript/install.sh installs the pinned tools (``.ci/run`` runs it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common_events import __version__
from common_events.contracts.npm import npm_version
from tests.support.servers import missing
from tests.typescript.npm import (
    PACKAGE_NAME,
    NpmRegistry,
    install_tools,
    node_available,
    output_of,
    run,
    start_registry,
)
from tests.typescript.service import NodeApp

# What a Node service of the ticketing app installs besides the events.
APP_DEPENDENCIES = {"node-nats-streaming": "0.3.2"}
APP_DEV_DEPENDENCIES = {"@types/node": "20.19.43"}


@pytest.fixture(scope="session")
def node_tools() -> None:
    """tsc and verdaccio in tests/typescript/node_modules, from the lock file."""
    reason = node_available()
    if reason is not None:
        missing(reason)
    result = install_tools()
    if result.returncode != 0:
        missing(f"tests/typescript/install.sh failed:\n{output_of(result)}")


@pytest.fixture(scope="session")
def npm_registry(
    node_tools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NpmRegistry]:
    registry = start_registry(tmp_path_factory.mktemp("verdaccio"))
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def npm_token(npm_registry: NpmRegistry) -> str:
    token = npm_registry.login()
    assert token, "the registry refused the right password"
    return token


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    directory: Path
    """What `common-events schema npm` wrote, and `npm publish` published."""


@pytest.fixture(scope="session")
def generated_package(tmp_path_factory: pytest.TempPathFactory, npm_registry: NpmRegistry) -> Path:
    """The package as the command line writes it, for the registry of this session."""
    directory = tmp_path_factory.mktemp("generated") / "package"
    result = run(
        [
            sys.executable,
            "-m",
            "common_events.cli.main",
            "schema",
            "npm",
            directory,
            "--name",
            PACKAGE_NAME,
            "--registry",
            npm_registry.url,
        ],
        timeout=120,
    )
    assert result.returncode == 0, output_of(result)
    return directory


@pytest.fixture(scope="session")
def published_package(
    npm_registry: NpmRegistry,
    npm_token: str,
    generated_package: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Published:
    home = tmp_path_factory.mktemp("publisher")
    environment = npm_registry.npmrc(home, npm_registry.token_credentials(npm_token))
    result = run(["npm", "publish", generated_package], cwd=home, env=environment)
    assert result.returncode == 0, output_of(result)
    return Published(PACKAGE_NAME, npm_version(__version__), generated_package)


@pytest.fixture(scope="session")
def node_app(
    npm_registry: NpmRegistry,
    npm_token: str,
    published_package: Published,
    tmp_path_factory: pytest.TempPathFactory,
) -> NodeApp:
    """A fresh Node project that installs the package (and everything else) from the
    private registry alone."""
    directory = tmp_path_factory.mktemp("app")
    manifest = {
        "name": "tickets-service",
        "version": "1.0.0",
        "private": True,
        "dependencies": {
            published_package.name: published_package.version,
            **APP_DEPENDENCIES,
        },
        "devDependencies": APP_DEV_DEPENDENCIES,
    }
    (directory / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    environment = npm_registry.npmrc(
        tmp_path_factory.mktemp("app-home"), npm_registry.token_credentials(npm_token)
    )
    result = run(["npm", "install", "--no-audit", "--no-fund"], cwd=directory, env=environment)
    assert result.returncode == 0, output_of(result) + "\n" + npm_registry.log_tail()
    return NodeApp(directory, environment)
