"""The release path, end to end on loopback: build, upload to a private index, install
from it alone, and use the installed package as a service would.

The index is a real ``pypiserver`` with an htpasswd password file, uploads need a login
and it never redirects to PyPI (``--disable-fallback``), so ``pip install --index-url``
succeeds only with what this index really serves. A private index serves the public
dependencies too (a mirror or a proxy in real life); here they are wheels downloaded
from PyPI once into ``.cache/release-test/`` and served as a second package directory of
the same server. Nothing is installed through ``--find-links`` or a pip configuration:
pip runs with an empty configuration and ``--no-cache-dir``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import IO

import pytest
from packaging.requirements import Requirement

from tests.release.support import ROOT, Distributions
from tests.support.servers import free_port, missing

pytestmark = pytest.mark.slow

USERNAME = "releaser"
PASSWORD = "correct horse battery staple"
EXAMPLES = ROOT / "examples"
CACHE = ROOT / ".cache" / "release-test" / f"py{sys.version_info.major}{sys.version_info.minor}"
READY_TIMEOUT = 30.0


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without anything that steers pip, twine or Python.

    A PIP_INDEX_URL, PIP_FIND_LINKS or pip.conf on the machine would let pip find
    packages elsewhere and the test would prove nothing about the index; a PYTHONPATH
    could import the working tree instead of the installed package.
    """
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PIP_", "TWINE_", "PYTHON", "VIRTUAL_ENV"))
    }
    environment |= {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        # No desktop keyring lookups for twine: only what the test passes counts.
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    return environment | extra


def run(
    command: Sequence[str | Path],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the index server ----------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    url: str
    """The upload URL; ``url + "simple/"`` is what pip reads."""
    packages: Path
    """Where uploads land (the first package directory)."""

    @property
    def simple(self) -> str:
        return f"{self.url}simple/"

    def stored(self) -> dict[str, str]:
        return {path.name: sha256(path) for path in sorted(self.packages.iterdir())}

    def project_page(self) -> str:
        try:
            with urllib.request.urlopen(f"{self.simple}common-events/", timeout=10) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return ""
            raise


def require_pypiserver() -> None:
    for module in ("pypiserver", "passlib"):
        if find_spec(module) is None:
            missing(
                f"{module} is not installed; the release tests need a real index: "
                "pip install 'pypiserver[passlib]' (part of the dev extra)"
            )


def write_password_file(path: Path) -> None:
    with warnings.catch_warnings():
        # passlib still imports the crypt module where it exists (3.11, 3.12) and works
        # without it; the warning is about passlib, not about this test.
        warnings.filterwarnings("ignore", "'crypt' is deprecated", DeprecationWarning)
        from passlib.apache import HtpasswdFile  # type: ignore[import-untyped]

    # apr1 is htpasswd's own default (`htpasswd -m`) and cheap to check, which matters
    # because pypiserver checks the password on every upload request; the password is
    # a throwaway for this test.
    passwords = HtpasswdFile(str(path), new=True, default_scheme="apr_md5_crypt")
    passwords.set_password(USERNAME, PASSWORD)
    passwords.save()


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"pypiserver exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"pypiserver not ready after {READY_TIMEOUT}s:\n{log.read_text()}")
        # Waiting on the process doubles as the pause between probes and notices at
        # once if it dies.
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)


@contextmanager
def running_index(workdir: Path, *served: Path) -> Iterator[Index]:
    """A pypiserver on a free loopback port; stopped and reaped whatever happens."""
    require_pypiserver()
    packages = workdir / "packages"
    packages.mkdir()
    password_file = workdir / "htpasswd"
    write_password_file(password_file)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = workdir / "pypiserver.log"
    log: IO[bytes]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pypiserver",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--passwords",
                str(password_file),
                "--authenticate",
                "update",
                "--disable-fallback",
                str(packages),
                *map(str, served),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_until_ready(process, url, log_path)
            yield Index(url=url, packages=packages)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# -- what the index serves besides our package ---------------------------------------


def runtime_requirements(distributions: Distributions, extras: Iterable[str] = ()) -> list[str]:
    """The wheel's own Requires-Dist with ``extras``: what `pip install` will ask for."""
    requirements = []
    for line in distributions.wheel_metadata().splitlines():
        if not line.startswith("Requires-Dist: "):
            continue
        requirement = Requirement(line.removeprefix("Requires-Dist: "))
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras)
        ):
            continue
        requirement.marker = None
        requirements.append(str(requirement))
    return requirements


def example_extras() -> list[str]:
    """The extras the examples' requirements.txt asks for (``common-events[sql]``)."""
    lines = (EXAMPLES / "tickets_service" / "requirements.txt").read_text().splitlines()
    (pin,) = [Requirement(line) for line in lines if line.startswith("common-events")]
    return sorted(pin.extras)


def example_test_requirements() -> list[str]:
    """What the examples' requirements-dev.txt adds for their tests (pytest...)."""
    lines = (EXAMPLES / "tickets_service" / "requirements-dev.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-"))]


def dependency_wheels(requirements: list[str]) -> Path:
    """Wheels for ``requirements`` (and their dependencies) in the cache directory.

    Offline first: when every wheel is already cached, PyPI is not asked at all.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    pip: list[str | Path] = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary",
        ":all:",
        "-d",
        CACHE,
    ]
    offline = run([*pip, "--no-index", "--find-links", CACHE, *requirements], timeout=120)
    if offline.returncode == 0:
        return CACHE
    online = run([*pip, *requirements], timeout=600)
    if online.returncode != 0:
        missing(
            "could not download the dependency wheels the index must serve:\n" + output_of(online)
        )
    return CACHE


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(
    distributions: Distributions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Index]:
    wheels = dependency_wheels(
        runtime_requirements(distributions, example_extras()) + example_test_requirements()
    )
    with running_index(tmp_path_factory.mktemp("index"), wheels) as running:
        yield running


def twine_upload(
    index: Index, files: Sequence[Path], *, username: str | None, password: str | None
) -> subprocess.CompletedProcess[str]:
    credentials = {}
    if username is not None:
        credentials["TWINE_USERNAME"] = username
    if password is not None:
        credentials["TWINE_PASSWORD"] = password
    return run(
        [
            sys.executable,
            "-m",
            "twine",
            "--no-color",
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            index.url,
            *files,
        ],
        env=clean_environment(**credentials),
        timeout=120,
    )


@pytest.fixture(scope="module")
def released(index: Index, distributions: Distributions) -> Index:
    result = twine_upload(index, distributions.files, username=USERNAME, password=PASSWORD)
    assert result.returncode == 0, output_of(result)
    return index


@pytest.fixture(scope="module")
def installed(
    released: Index, distributions: Distributions, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A fresh virtual environment with common-events, and the extras the examples ask
    for, installed from the index alone.

    Returns its python.
    """
    venv = tmp_path_factory.mktemp("service") / "venv"
    # --without-pip and the running pip pointed at it (`pip --python`): the same install
    # into the same environment, without ensurepip's ten seconds.
    created = run(
        [sys.executable, "-m", "venv", "--without-pip", venv],
        timeout=120,
        env=clean_environment(),
    )
    assert created.returncode == 0, output_of(created)
    python = venv / "bin" / "python"
    install = run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-cache-dir",
            "--only-binary",
            ":all:",
            "--index-url",
            released.simple,
            f"common-events[{','.join(example_extras())}]=={distributions.version}",
            *example_test_requirements(),
        ],
        env=clean_environment(),
        cwd=venv.parent,
        timeout=600,
    )
    assert install.returncode == 0, output_of(install)
    assert f"Looking in indexes: {released.simple}" in install.stdout, install.stdout
    return python


# -- the tests -----------------------------------------------------------------------


def test_uploads_without_or_with_wrong_credentials_are_refused_and_store_nothing(
    distributions: Distributions, tmp_path: Path
) -> None:
    with running_index(tmp_path) as index:
        # Without credentials, straight to the index: it answers 401 itself.
        request = urllib.request.Request(
            index.url,
            data=b":action=file_upload&name=common-events&version="
            + distributions.version.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401

        # twine without credentials stops before sending anything.
        anonymous = twine_upload(index, distributions.files, username=None, password=None)
        assert anonymous.returncode != 0
        assert "Credential not found" in anonymous.stdout + anonymous.stderr

        for username, password in ((USERNAME, "wrong password"), ("somebody", PASSWORD)):
            wrong = twine_upload(index, distributions.files, username=username, password=password)
            assert wrong.returncode != 0, output_of(wrong)
            assert "403 Forbidden" in wrong.stdout + wrong.stderr

        # The release tooling says what is wrong in words.
        tooling = run(
            [
                sys.executable,
                ROOT / "scripts" / "release.py",
                "upload",
                "--outdir",
                distributions.directory,
                "--repository-url",
                index.url,
            ],
            timeout=120,
            env=clean_environment(TWINE_USERNAME=USERNAME, TWINE_PASSWORD="wrong password"),
        )
        assert tooling.returncode == 4, output_of(tooling)
        assert "refused the credentials" in tooling.stderr

        assert index.stored() == {}
        assert index.project_page() == ""


def test_an_upload_with_the_right_credentials_is_accepted(
    released: Index, distributions: Distributions
) -> None:
    assert released.stored() == {path.name: sha256(path) for path in distributions.files}
    page = released.project_page()
    for path in distributions.files:
        assert path.name in page


def test_pip_installs_the_release_from_the_private_index_alone(
    installed: Path, distributions: Distributions, tmp_path: Path
) -> None:
    # Run outside the repository, so that only the installed package can be imported.
    probe = run(
        [
            installed,
            "-c",
            "import json, importlib.metadata, common_events; print(json.dumps({"
            "'version': common_events.__version__, "
            "'distribution': importlib.metadata.version('common-events'), "
            "'file': common_events.__file__}))",
        ],
        cwd=tmp_path,
        env=clean_environment(),
        timeout=60,
    )
    assert probe.returncode == 0, output_of(probe)
    found = json.loads(probe.stdout)
    assert found["version"] == found["distribution"] == distributions.version
    assert Path(found["file"]).is_relative_to(installed.parent.parent)

    # Every distribution in the environment came through this index (nothing else
    # was configured), and the package's dependencies are among them.
    listed = run(
        [sys.executable, "-m", "pip", "--python", installed, "list", "--format=json"],
        env=clean_environment(),
        timeout=60,
    )
    names = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert {"common-events", "pydantic", "nats-py", "protobuf", "pytest"} <= names


EXCHANGE = """
import asyncio, json

from common_events import connect
from common_events.outbox import Outbox, OutboxRelay
from common_events.transports.memory import MemoryBroker
from sqlalchemy.ext.asyncio import async_sessionmaker

import orders_service
import tickets_service
from orders_service.events import TicketCreatedListener, TicketUpdatedListener


async def main() -> None:
    broker = MemoryBroker()  # one in-process broker, two services
    tickets_bus = await connect("memory://", broker=broker)
    orders_bus = await connect("memory://", broker=broker)
    tickets_db = tickets_service.open_database("tickets.sqlite3")
    orders_db = orders_service.open_database("orders.sqlite3")
    await tickets_service.create_schema(tickets_db)
    await orders_service.create_schema(orders_db)
    copies = async_sessionmaker(orders_db, expire_on_commit=False)
    applied = asyncio.Event()

    class TicketUpdated(TicketUpdatedListener):
        async def on_message(self, event, msg):
            await super().on_message(event, msg)
            applied.set()

    created = TicketCreatedListener(orders_bus, copies)
    updated = TicketUpdated(orders_bus, copies)
    await created.listen()
    await updated.listen()

    outbox = Outbox()  # the tickets service writes its events here; its relay sends them
    relay = OutboxRelay(tickets_bus, tickets_db, outbox=outbox)
    await relay.start()
    sessions = async_sessionmaker(tickets_db, expire_on_commit=False)
    tickets = tickets_service.Tickets(sessions, outbox)
    ticket = await tickets.create(title="Concert", price=20, user_id="seller")
    await tickets.edit(ticket.id, title="Concert (matinee)", price=15)
    await asyncio.wait_for(applied.wait(), 10)
    async with copies() as session:
        copy = await session.get(orders_service.Ticket, ticket.id)
    print(json.dumps({"sent": {"id": ticket.id},
                      "copy": {"id": copy.id, "title": copy.title, "price": copy.price,
                               "version": copy.version}}))
    await created.close()
    await updated.close()
    await relay.close()
    await tickets_bus.close()
    await orders_bus.close()
    await tickets_db.dispose()
    await orders_db.dispose()


asyncio.run(main())
"""


@pytest.fixture
def examples_copy(tmp_path: Path) -> Path:
    """The examples as a team would copy them: outside the repository."""
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return target


def test_example_services_exchange_events_in_the_installed_environment(
    installed: Path, examples_copy: Path
) -> None:
    search_path = os.pathsep.join(
        str(examples_copy / name) for name in ("tickets_service", "orders_service")
    )
    result = run(
        [installed, "-c", EXCHANGE],
        cwd=examples_copy,
        env=clean_environment(PYTHONPATH=search_path),
        timeout=60,
    )
    assert result.returncode == 0, output_of(result)
    exchanged = json.loads(result.stdout)
    assert exchanged["copy"] == {
        "id": exchanged["sent"]["id"],
        "title": "Concert (matinee)",
        "price": 15,
        "version": 1,
    }


@pytest.mark.parametrize("service", ["tickets_service", "orders_service"])
def test_example_entry_points_run_until_sigterm_in_the_installed_environment(
    installed: Path, examples_copy: Path, service: str, tmp_path: Path
) -> None:
    log_path = tmp_path / f"{service}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(installed), "-m", service],
            cwd=examples_copy / service,
            env=clean_environment(
                COMMON_EVENTS_URL="memory://",
                TICKETS_DB=str(tmp_path / "tickets.sqlite3"),
                ORDERS_DB=str(tmp_path / "orders.sqlite3"),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while "service running with 2 listener(s)" not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                # Waiting on the process is the pause, and notices at once if it dies.
                with suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.05)
            process.terminate()  # SIGTERM, as a container runtime stops a service
            assert process.wait(timeout=20) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    output = log_path.read_text()
    assert "received SIGTERM; shutting down" in output
    assert output.rstrip().endswith("service stopped")


@pytest.mark.parametrize("service", ["tickets_service", "orders_service"])
def test_example_service_tests_pass_with_the_installed_pytest_plugin(
    installed: Path, examples_copy: Path, service: str, distributions: Distributions
) -> None:
    result = run(
        [installed, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=examples_copy / service,
        env=clean_environment(),
        timeout=180,
    )
    assert result.returncode == 0, output_of(result)
    # The plugin was loaded through the installed package's pytest11 entry point.
    plugins = next(line for line in result.stdout.splitlines() if line.startswith("plugins:"))
    assert f"common-events-{distributions.version}" in plugins
    assert " passed" in result.stdout.splitlines()[-1]


def test_uploading_the_same_version_again_is_refused_and_reported(
    released: Index, distributions: Distributions
) -> None:
    before = released.stored()
    result = run(
        [
            sys.executable,
            ROOT / "scripts" / "release.py",
            "upload",
            "--outdir",
            distributions.directory,
            "--repository-url",
            released.url,
        ],
        timeout=120,
        env=clean_environment(TWINE_USERNAME=USERNAME, TWINE_PASSWORD=PASSWORD),
    )
    assert result.returncode == 3, output_of(result)
    assert (
        f"release: error: common-events {distributions.version} is already on {released.url}"
        in result.stderr
    )
    assert "bump __version__" in result.stderr
    assert released.stored() == before
