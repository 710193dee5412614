"""Fresh environments for the dependency matrix, cached under ``.venv-matrix/``.

An environment is the built wheel (with the ``server`` extra) plus exact requirements
plus the test tools, in a new virtual environment of this Python. Its directory name
holds a hash of everything that decides its contents (this Python, the wheel's
``Requires-Dist``, the requirements, the tools), so a change of any of them builds a
new one, and "the newest release" is resolved to an exact version on every run: when a
dependency releases, the newest environment is rebuilt. On later runs a cached
environment only gets the freshly built wheel (without dependencies) and ``pip check``
proves the wheel's requirements still hold in it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.release.support import ROOT, Distributions

MATRIX_DIR = ROOT / ".venv-matrix"

# Test tools, at whatever version pip picks: they are not what is being tested.
TEST_TOOLS = (
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "jsonschema>=4.21",
    "pyyaml>=6",
    "mypy>=1.11",  # tests/core checks that mypy catches a listener typed for the wrong event
)

INSTALL_TIMEOUT = 900


class InstallFailed(Exception):
    """pip refused an environment; ``unreachable`` when it could not reach an index."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Environment:
    """One cell of the matrix: what it installs, what it must end up with, what it runs."""

    name: str
    requirements: tuple[str, ...]
    """Installed together with the wheel, in one resolution."""
    expected: dict[str, str] = field(hash=False)
    """Distribution name -> specifier its installed version must satisfy."""
    suites: tuple[str, ...]
    """Test paths (relative to the repository) run in it; empty for none."""
    tools: tuple[str, ...] = TEST_TOOLS
    extras: str = "server"

    def key(self, distributions: Distributions) -> str:
        recipe = {
            "python": sys.version,
            "requires": sorted(requires_dist(distributions)),
            "requirements": list(self.requirements),
            "tools": list(self.tools),
            "extras": self.extras,
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def requires_dist(distributions: Distributions) -> list[str]:
    return [
        line.removeprefix("Requires-Dist: ")
        for line in distributions.wheel_metadata().splitlines()
        if line.startswith("Requires-Dist: ")
    ]


def runtime_requirements(distributions: Distributions) -> list[Requirement]:
    """The wheel's dependencies outside any extra, as they apply to this Python."""
    return [
        requirement
        for requirement in map(Requirement, requires_dist(distributions))
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""})
    ]


def lower_bound(requirement: Requirement) -> str:
    (lower,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    return lower


def pip(*args: str | Path, timeout: float = INSTALL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _unreachable(output: str) -> bool:
    return any(
        sign in output
        for sign in (
            "Could not find a version",
            "Failed to establish",
            "NewConnectionError",
            "Temporary failure in name resolution",
            "No matching distribution",
        )
    )


@functools.cache
def released_versions(name: str) -> tuple[Version, ...]:
    """Every final release of ``name`` on the index, as pip sees it from this Python."""
    result = pip("index", "versions", name, timeout=120)
    match = re.search(r"^Available versions: (.+)$", result.stdout, re.M)
    if result.returncode != 0 or match is None:
        raise InstallFailed(
            f"pip index versions {name} failed:\n{result.stdout}{result.stderr}",
            unreachable=True,
        )
    versions = (Version(text.strip()) for text in match.group(1).split(","))
    return tuple(sorted(v for v in versions if not v.is_prerelease))


def newest(name: str, specifier: str = "") -> str:
    """The newest final release of ``name`` that ``specifier`` allows."""
    allowed = list(SpecifierSet(specifier).filter(released_versions(name)))
    if not allowed:
        raise AssertionError(f"no release of {name} matches {specifier!r}")
    return str(max(allowed))


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder per environment name, across concurrent test sessions."""
    MATRIX_DIR.mkdir(exist_ok=True)
    with (MATRIX_DIR / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def python_of(directory: Path) -> Path:
    return directory / "bin" / "python"


def prepare(environment: Environment, distributions: Distributions) -> Path:
    """The environment's Python, built (or refreshed with the new wheel) as needed."""
    directory = MATRIX_DIR / f"{environment.name}-{environment.key(distributions)}"
    complete = directory / ".complete"
    wheel = (
        f"{distributions.wheel}[{environment.extras}]"
        if environment.extras
        else str(distributions.wheel)
    )
    with _locked(environment.name):
        if complete.exists():
            refreshed = pip(
                "--python",
                python_of(directory),
                "install",
                "--no-deps",
                "--force-reinstall",
                distributions.wheel,
            )
            if refreshed.returncode != 0:
                raise InstallFailed(refreshed.stderr, unreachable=False)
        else:
            shutil.rmtree(directory, ignore_errors=True)
            subprocess.run(
                [sys.executable, "-m", "venv", "--without-pip", str(directory)],
                check=True,
                timeout=120,
            )
            # The wheel, the requirements and the tools in one resolution: pip refuses if
            # they cannot be installed together.
            installed = pip(
                "--python",
                python_of(directory),
                "install",
                wheel,
                *environment.requirements,
                *environment.tools,
            )
            if installed.returncode != 0:
                shutil.rmtree(directory, ignore_errors=True)
                raise InstallFailed(
                    f"{environment.name}: pip install {list(environment.requirements)} "
                    f"failed:\n{installed.stderr[-4000:]}",
                    unreachable=_unreachable(installed.stderr),
                )
            complete.write_text("\n".join(environment.requirements) + "\n")
            for stale in MATRIX_DIR.glob(f"{environment.name}-*"):
                if stale != directory and stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
        checked = pip("--python", python_of(directory), "check", timeout=120)
        if checked.returncode != 0:
            raise InstallFailed(
                f"{environment.name}: pip check: {checked.stdout}", unreachable=False
            )
    return python_of(directory)


def installed_versions(python: Path) -> dict[str, str]:
    """Normalised distribution name -> version, as the environment itself reports them."""
    script = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))\n"
    )
    result = subprocess.run(
        [str(python), "-I", "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    found: dict[str, str] = json.loads(result.stdout)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in found.items()}


def copy_tests(destination: Path, suites: Sequence[str]) -> Path:
    """The tests (and the pytest configuration) outside the repository, so that the
    environment's installed wheel, not the repository's sources, is what they import.

    One copy per environment: some tests write into their tree. The Node tools
    (``node_modules``) are the repository's, linked rather than copied."""
    ignore = shutil.ignore_patterns(
        "__pycache__", "node_modules", ".pytest_cache", ".hypothesis", "*.pyc"
    )
    tops = {suite.split("/")[0] for suite in suites}
    for top in sorted(tops):
        shutil.copytree(ROOT / top, destination / top, ignore=ignore)
        for installed in (ROOT / top).glob("*/node_modules"):
            link = destination / installed.relative_to(ROOT)
            link.symlink_to(installed, target_is_directory=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, destination / name)
    return destination


def install_node_tools() -> None:
    """Bring the repository's Node tools up to date once, before the environments
    share them (each install script does nothing when they already are)."""
    if shutil.which("npm") is None:
        return  # the tests that need Node say so themselves
    for script in sorted(ROOT.glob("tests/*/install.sh")):
        if (script.parent / "package-lock.json").exists():
            subprocess.run(["bash", str(script)], check=False, timeout=900)


def run_suites(python: Path, suites: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("PYTHON")
    }
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    # The venv's bin holds nats-server (server extra); nats-streaming-server comes from
    # GOPATH/bin, which the fixtures search themselves.
    environment["PATH"] = os.pathsep.join([str(python.parent), environment.get("PATH", "")])
    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", *suites],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
