"""What `python -m build` makes: the files a release uploads, and their metadata."""

from __future__ import annotations

import email.parser
import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import common_events
from tests.release.support import ROOT, Distributions

PACKAGE = ROOT / "common_events"
SUPPORTED_PYTHONS = ["3.11", "3.12", "3.13", "3.14"]
"""Also the CI matrix (tests/release/test_workflows.py checks it)."""


@pytest.fixture(scope="module")
def wheel_names(distributions: Distributions) -> set[str]:
    with zipfile.ZipFile(distributions.wheel) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def metadata(distributions: Distributions) -> Message:
    return email.parser.Parser().parsestr(distributions.wheel_metadata())


def package_files(*patterns: str) -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for pattern in patterns
        for path in PACKAGE.rglob(pattern)
        if "__pycache__" not in path.parts
    }


def test_twine_check_strict_passes(distributions: Distributions) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, distributions.files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_the_wheel_holds_the_package_and_its_type_information(wheel_names: set[str]) -> None:
    assert package_files("*.py") <= wheel_names
    assert "common_events/py.typed" in wheel_names
    # The generated protobuf module's stub is what mypy reads for it.
    assert package_files("*.pyi") <= wheel_names


def test_the_wheel_holds_the_schema_snapshots(
    wheel_names: set[str], distributions: Distributions
) -> None:
    snapshots = package_files("contracts/schemas/**/*.json")
    assert snapshots, "no schema snapshots under common_events/contracts/schemas/"
    assert snapshots <= wheel_names
    # A release ships the snapshot of its own version: that is what the next version's
    # compatibility check compares against.
    assert any(f"/schemas/{distributions.version}/" in name for name in snapshots)


def test_the_wheel_holds_no_tests_or_examples(
    wheel_names: set[str], distributions: Distributions
) -> None:
    test_like = {
        name
        for name in wheel_names
        if name.startswith(("tests/", "examples/"))
        or re.search(r"(^|/)(test_[^/]*\.py|conftest\.py)$", name)
    }
    assert test_like == set()
    assert {name.split("/")[0] for name in wheel_names} == {
        "common_events",
        f"common_events-{distributions.version}.dist-info",
    }


def test_the_sdist_holds_what_the_wheel_is_built_from(distributions: Distributions) -> None:
    prefix = f"common_events-{distributions.version}/"
    with tarfile.open(distributions.sdist) as archive:
        names = {name.removeprefix(prefix) for name in archive.getnames()}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE"} <= names
    assert package_files("*.py", "*.pyi", "py.typed") <= names


def test_the_description_is_the_readme(metadata: Message) -> None:
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert description.strip() == (ROOT / "README.md").read_text().strip()
    assert metadata["Summary"]


def test_license_python_versions_and_urls(metadata: Message) -> None:
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == f">={SUPPORTED_PYTHONS[0]}"
    classifiers = metadata.get_all("Classifier") or []
    versions = [
        c.removeprefix("Programming Language :: Python :: ")
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions == SUPPORTED_PYTHONS
    assert "Typing :: Typed" in classifiers
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def test_dependencies_have_lower_bounds_and_no_upper_caps(metadata: Message) -> None:
    # Services pin this package and live with their own versions of pydantic & co.:
    # an upper cap here would block their upgrades for no reason.
    runtime = [
        Requirement(line)
        for line in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in line
    ]
    assert {r.name for r in runtime} >= {"pydantic", "nats-py", "protobuf"}
    for requirement in runtime:
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">="}, f"{requirement}: want exactly one >= lower bound"


def test_the_entry_points(distributions: Distributions) -> None:
    with zipfile.ZipFile(distributions.wheel) as archive:
        entry_points = archive.read(
            f"common_events-{distributions.version}.dist-info/entry_points.txt"
        ).decode()
    assert "[pytest11]\ncommon_events = common_events.testing.plugin" in entry_points
    assert "common-events = common_events.cli.main:main" in entry_points


def test_release_tooling_reads_the_same_version(distributions: Distributions) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "release.py"),
            "check-tag",
            f"v{distributions.version}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert common_events.__version__ == distributions.version
    assert Path(common_events.__file__).parent == PACKAGE


@pytest.mark.parametrize("service", ["tickets_service", "orders_service"])
def test_the_examples_pin_this_version_from_the_private_index(
    service: str, distributions: Distributions
) -> None:
    lines = [
        line.strip()
        for line in (ROOT / "examples" / service / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    index_urls = [line.split()[1] for line in lines if line.startswith("--index-url")]
    assert len(index_urls) == 1 and index_urls[0].endswith("/simple/")
    (pin,) = [Requirement(line) for line in lines if line.startswith("common-events")]
    # What a team copies must install the current release.
    assert pin.specifier.contains(distributions.version), pin
