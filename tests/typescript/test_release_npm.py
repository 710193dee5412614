"""The release publishes the npm package from the same tag as the Python package: the
workflow's own npm steps, run as the runner would, against a real private registry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common_events import __version__
from common_events.contracts.npm import npm_package, npm_version, write_npm_package
from tests.typescript.npm import (
    PACKAGE_NAME,
    PASSWORD,
    USERNAME,
    NpmRegistry,
    npm_environment,
    start_registry,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
SCRIPT = ROOT / "scripts" / "release.py"


def steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(RELEASE.read_text())
    found: list[dict[str, Any]] = workflow["jobs"]["release"]["steps"]
    return found


def step(text: str) -> tuple[int, dict[str, Any]]:
    matches = [(i, s) for i, s in enumerate(steps()) if text in s.get("run", "")]
    assert len(matches) == 1, f"want one step running {text!r}, found {len(matches)}"
    return matches[0]


def test_one_tag_releases_both_packages_in_a_safe_order() -> None:
    order = [
        "scripts/release.py check-tag",
        "scripts/release.py build",
        "pip install dist/*.whl",
        "scripts/release.py check-contracts",
        "scripts/release.py npm-pack",
        "scripts/release.py npm-check",
        "scripts/release.py upload",
        "scripts/release.py npm-publish",
        "gh release",
    ]

    indices = [step(text)[0] for text in order]

    assert indices == sorted(indices)
    uses = [s.get("uses", "") for s in steps()]
    assert any(u.startswith("actions/setup-node@") for u in uses)
    assert step("npm-pack")[1]["env"] == {
        "NPM_PACKAGE_NAME": "${{ vars.NPM_PACKAGE_NAME }}",
        "NPM_REGISTRY_URL": "${{ secrets.NPM_REGISTRY_URL }}",
    }
    for name in ("npm-check", "npm-publish"):
        assert step(name)[1]["env"] == {
            "NPM_REGISTRY_URL": "${{ secrets.NPM_REGISTRY_URL }}",
            "NPM_TOKEN": "${{ secrets.NPM_TOKEN }}",
        }


@pytest.fixture(scope="module")
def release_registry(
    node_tools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NpmRegistry]:
    """A registry of its own: the release publishes this version, which the other
    tests' registry has already."""
    registry = start_registry(tmp_path_factory.mktemp("release-registry"))
    yield registry
    registry.stop()


def run_step(text: str, workdir: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """The workflow step's own command, in bash, with ``python`` being this Python and
    the release script of this tree; ``dist`` is ``workdir/dist``."""
    command = step(text)[1]["run"].replace("scripts/release.py", str(SCRIPT))
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    base = npm_environment(workdir / "home")
    del base["npm_config_userconfig"]  # the release script writes its own
    return subprocess.run(
        ["bash", "-e", "-c", command],
        cwd=workdir,
        env={**base, "PATH": path, **environment},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def shown(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_the_contracts_allow_this_version(tmp_path: Path) -> None:
    result = run_step("check-contracts", tmp_path)

    assert result.returncode == 0, shown(result)
    assert f"release: the contracts allow {__version__}" in result.stdout


def test_the_workflow_publishes_the_npm_package_once(
    release_registry: NpmRegistry, tmp_path: Path
) -> None:
    token = release_registry.login()
    assert token
    settings = {
        "NPM_PACKAGE_NAME": PACKAGE_NAME,
        "NPM_REGISTRY_URL": release_registry.url,
        "NPM_TOKEN": token,
    }
    version = npm_version(__version__)

    packed = run_step("npm-pack", tmp_path, **settings)
    assert packed.returncode == 0, shown(packed)
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == [
        f"ticketing-common-events-{version}.tgz"
    ]
    checked = run_step("npm-check", tmp_path, **settings)
    assert checked.returncode == 0, shown(checked)
    assert f"release: {release_registry.url} takes {PACKAGE_NAME} {version}" in checked.stdout
    published = run_step("npm-publish", tmp_path, **settings)
    assert published.returncode == 0, shown(published)
    assert release_registry.stored_versions() == [version]
    stored = release_registry.stored()

    again = run_step("npm-publish", tmp_path, **settings)
    checked_again = run_step("npm-check", tmp_path, **settings)

    assert again.returncode == 3, shown(again)
    assert "is already on" in again.stderr
    assert checked_again.returncode == 3, shown(checked_again)
    assert release_registry.stored() == stored
    # No secret was written where the release ran.
    written = "".join(
        path.read_text(errors="replace")
        for path in tmp_path.rglob("*")
        if path.is_file() and path.suffix != ".tgz"
    )
    assert token not in written


@pytest.mark.parametrize(
    "credentials",
    [
        {"NPM_USERNAME": USERNAME, "NPM_PASSWORD": "wrong password"},
        {"NPM_TOKEN": "not-a-token"},
        {},
    ],
    ids=["wrong password", "wrong token", "none"],
)
def test_refused_credentials_stop_the_release_before_anything_is_stored(
    release_registry: NpmRegistry, tmp_path: Path, credentials: dict[str, str]
) -> None:
    settings = {"NPM_PACKAGE_NAME": PACKAGE_NAME, "NPM_REGISTRY_URL": release_registry.url}
    packed = run_step("npm-pack", tmp_path, **settings)
    assert packed.returncode == 0, shown(packed)
    before = release_registry.stored()

    checked = run_step("npm-check", tmp_path, **settings, **credentials)
    published = run_step("npm-publish", tmp_path, **settings, **credentials)

    assert checked.returncode == 4, shown(checked)
    assert published.returncode == 4, shown(published)
    assert release_registry.stored() == before
    assert "wrong password" not in checked.stdout + checked.stderr


def test_a_password_login_publishes_a_pre_release_under_next(
    release_registry: NpmRegistry, tmp_path: Path
) -> None:
    # npm-publish reads the version from the tarball; the script's own version check
    # compares its release part, so a tarball of this version's pre-release passes.
    package = npm_package(
        PACKAGE_NAME, python_version=f"{__version__}rc7", registry=release_registry.url
    )
    write_npm_package(tmp_path / "package", package)
    (tmp_path / "dist").mkdir()
    environment = npm_environment(tmp_path / "home")
    packed = subprocess.run(
        ["npm", "pack", str(tmp_path / "package"), "--pack-destination", str(tmp_path / "dist")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert packed.returncode == 0, packed.stderr

    published = run_step(
        "npm-publish",
        tmp_path,
        NPM_REGISTRY_URL=release_registry.url,
        NPM_USERNAME=USERNAME,
        NPM_PASSWORD=PASSWORD,
    )

    assert published.returncode == 0, shown(published)
    assert f"{npm_version(__version__)}-rc.7" in release_registry.stored_versions()


def releasing_commands() -> list[str]:
    """The commands of RELEASING.md's console block, continuation lines joined."""
    text = (ROOT / "RELEASING.md").read_text()
    (block,) = re.findall(r"```console\n(.*?)```", text, flags=re.DOTALL)
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


# Run by tests/release (build and twine check; upload to a real pypiserver), and not
# here: they write into the working tree's dist/ or install into this environment.
COVERED_BY_TESTS_RELEASE = ("release.py build", "pip install", "release.py upload")


@pytest.fixture
def empty_registry(node_tools: None, tmp_path: Path) -> Iterator[NpmRegistry]:
    registry = start_registry(tmp_path / "registry")
    yield registry
    registry.stop()


def test_the_commands_of_releasing_md_run(empty_registry: NpmRegistry, tmp_path: Path) -> None:
    release_registry = empty_registry
    token = release_registry.login()
    assert token
    commands = releasing_commands()
    ran = []

    for command in commands:
        if any(part in command for part in COVERED_BY_TESTS_RELEASE):
            continue
        command = command.replace("vX.Y.Z", f"v{__version__}")
        command = command.replace("https://npm.internal.example/", release_registry.url)
        command = command.replace("NPM_TOKEN=...", f"NPM_TOKEN={token}")
        if " npm-" in command:
            command += f" --outdir {tmp_path / 'dist'}"
        result = subprocess.run(
            ["bash", "-e", "-c", command.replace("scripts/release.py", str(SCRIPT))],
            cwd=tmp_path,
            env={
                **npm_environment(tmp_path / "home"),
                "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{shown(result)}"
        ran.append(command)

    steps_run = {re.search(r"release\.py (\S+)", c).group(1) for c in ran}  # type: ignore[union-attr]
    assert steps_run == {"check-tag", "check-contracts", "npm-pack", "npm-check", "npm-publish"}
    assert npm_version(__version__) in release_registry.stored_versions()
