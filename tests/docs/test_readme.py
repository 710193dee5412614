"""What README.md says holds: its programs print and log what it says, its test section
passes under pytester with only the configuration it gives, every name it offers is
importable where it says, and one private index and one list of extras."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import common_events
from tests.docs.conftest import PageRuns
from tests.docs.pages import README, ROOT, Block, blocks, python_blocks

pytest_plugins = ["pytester"]

TEXT = README.read_text(encoding="utf-8")
PROSE = re.sub(r"^```.*?^```", "", TEXT, flags=re.M | re.S)


def section(heading: str) -> str:
    start = TEXT.index(f"\n{heading}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end >= 0 else len(TEXT)]


def test_readme_shows_the_two_commands_first() -> None:
    first_console = re.search(r"```console\n(.*?)```", TEXT, flags=re.DOTALL)
    assert first_console is not None
    commands = [line.split("#")[0].strip() for line in first_console.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


# -- the programs ---------------------------------------------------------------------


def test_the_use_example_handles_its_event_logs_and_stops_on_ctrl_c(page_runs: PageRuns) -> None:
    (service,) = page_runs(README).services
    assert service.returncode == 0, service.describe()
    assert service.stdout.split() == ["t1", "Concert", "20.0"]
    # Its logging.basicConfig line makes it say what it does.
    for line in (
        "INFO:common_events.core.bus:connected to memory://",
        "INFO:common_events.core.service:received SIGINT; shutting down",
        "INFO:common_events.core.service:service stopped",
    ):
        assert line in service.stderr, service.describe()


def test_the_script_logs_as_the_logging_section_sets_it_up(page_runs: PageRuns) -> None:
    script = page_runs(README).script
    assert script is not None
    assert script.returncode == 0, script.describe()
    record = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO common_events\.core\.bus: connected to "
    for url in ("stan://127.0.0.1:", "nats://127.0.0.1:", "tls://127.0.0.1:"):
        assert re.search(record + re.escape(url), script.stderr), script.describe()
    # The transports' connection layer was turned down to WARNING.
    assert "common_events.transports.nats_connection" not in script.stderr


def test_the_stan_client_id_starts_with_the_name_given(page_runs: PageRuns) -> None:
    script = page_runs(README).script
    assert script is not None
    first = script.stdout.splitlines()[0]
    assert re.fullmatch(r"tickets-service-[0-9a-f]{16}", first), script.describe()


def test_the_testing_section_passes_under_pytester(pytester: pytest.Pytester) -> None:
    """Only the files the README shows, the configuration included."""
    files = [block for block in blocks(README) if block.kind == "file"]
    assert {block.argument for block in files} == {
        "pyproject.toml",
        "orders/listeners.py",
        "conftest.py",
        "tests/test_ticket_updated.py",
    }
    for block in files:
        path = pytester.path / block.argument
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.source, encoding="utf-8")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)
    output = "\n".join(result.outlines + result.errlines)
    assert "Warning" not in output, output


def test_the_testing_section_says_what_to_configure() -> None:
    testing = section("## Testing a service: the pytest plugin")
    (config,) = [block for block in blocks(README) if block.argument == "pyproject.toml"]
    assert tomllib.loads(config.source)["tool"]["pytest"]["ini_options"]["asyncio_mode"] == (
        "auto"
    )
    assert "asyncio_mode = auto" in testing  # the pytest.ini spelling too


# -- names ----------------------------------------------------------------------------

# Names the prose mentions that live elsewhere than ``common_events``, by module.
ELSEWHERE = {
    "EmbeddedNatsServer": "common_events.testing.servers",
    "EmbeddedNatsCluster": "common_events.testing.servers",
    "StanServer": "common_events.testing.servers",
    "IdempotentListener": "common_events.outbox",
}
NOT_NAMES = {"EVENTS", "True"}  # the stream's name, a value
FUNCTIONS = ("connect", "run_service", "event_type")


def imported_names(block: Block) -> list[tuple[str, str]]:
    return [
        (node.module or "", alias.name)
        for node in ast.walk(ast.parse(block.source))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("common_events")
        for alias in node.names
    ]


def test_every_name_imported_in_a_block_is_there() -> None:
    found = [pair for block in python_blocks(README) for pair in imported_names(block)]
    assert ("common_events", "connect") in found
    for module_name, name in found:
        module = importlib.import_module(module_name)
        assert hasattr(module, name), f"from {module_name} import {name} fails"
        if module_name == "common_events":
            assert name in common_events.__all__, f"{name} is not in common_events.__all__"


def test_every_class_the_prose_names_is_importable() -> None:
    names = set(re.findall(r"`([A-Z][A-Za-z0-9]+)`", PROSE)) - NOT_NAMES
    assert {"StreamConflict", "PublishAck", "ConnectionLost", "OutOfOrder"} <= names
    for name in sorted(names):
        module = importlib.import_module(ELSEWHERE.get(name, "common_events"))
        assert hasattr(module, name), f"the README names {name}, which {module.__name__} lacks"
        if module is common_events:
            assert name in common_events.__all__, f"{name} is not in common_events.__all__"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_functions_the_prose_calls_are_exported(name: str) -> None:
    assert f"`{name}(" in PROSE
    assert name in common_events.__all__


def test_every_dotted_path_the_prose_names_resolves() -> None:
    paths = set(re.findall(r"`(common_events(?:\.\w+)+)(?:\([^`]*\))?`", PROSE))
    assert "common_events.transports.jetstream.monitor.read_monitor" in paths
    for path in sorted(paths):
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                target: object = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attribute in parts[cut:]:
                assert hasattr(target, attribute), f"the README names {path}, which is not there"
                target = getattr(target, attribute)
            break
        else:
            raise AssertionError(f"the README names {path}, which is not there")


# -- install --------------------------------------------------------------------------

INDEX_URL = re.compile(r"(?:--index-url|--repository-url)[ =]['\"]?(https?://[^\s'\"`]+)")


def test_one_private_index_placeholder_everywhere() -> None:
    documents = [
        README,
        ROOT / "RELEASING.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").glob("*/requirements*.txt")),
    ]
    hosts: dict[str, set[str]] = {}
    for document in documents:
        for url in INDEX_URL.findall(document.read_text(encoding="utf-8")):
            host = re.sub(r"^https?://([^/]+).*$", r"\1", url)
            hosts.setdefault(host, set()).add(document.relative_to(ROOT).as_posix())
    assert "pypi.internal.example" in hosts
    assert set(hosts) == {"pypi.internal.example"}, hosts
    assert "<your-" not in TEXT


def readme_extras() -> dict[str, str]:
    install = section("## Install")
    rows = re.findall(r"^\| `([a-z]+)` \| ([^|]+) \| ([^|]+) \|$", install, flags=re.M)
    return {name: purpose.strip() for name, _installs, purpose in rows}


def test_the_install_section_lists_the_extras_once_each_with_its_purpose() -> None:
    extras = readme_extras()
    assert list(extras) == ["server", "yaml", "testing", "nkeys", "sql", "otel", "prometheus"]
    assert all(len(purpose) > 10 for purpose in extras.values()), extras
    # Elsewhere the README names an extra, it does not list them again.
    outside = TEXT.replace(section("## Install"), "")
    assert not re.search(r"common-events\[", outside), "an extra is installed outside Install"


def pyproject_extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return set(project.get("optional-dependencies", {})) - {"dev"}


def test_every_extra_of_the_package_is_in_the_readme() -> None:
    assert pyproject_extras() <= set(readme_extras())


def test_every_extra_in_the_readme_exists() -> None:
    missing = set(readme_extras()) - pyproject_extras()
    assert not missing, f"pyproject.toml has no extra {sorted(missing)}"


# -- the npm package ------------------------------------------------------------------


def test_readme_npm_command_writes_the_package_at_this_version(tmp_path: Path) -> None:
    text = section("## For the Node services")
    (block,) = re.findall(r"```console\n(.*?)```", text, flags=re.DOTALL)[:1]
    command = block.strip().split()
    assert command[0] == "common-events"
    subprocess.run(
        [sys.executable, "-m", "common_events.cli.main", *command[1:]],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    package = json.loads((tmp_path / "build/npm/package.json").read_text())
    assert package["name"] == "@ticketing/common-events"
    assert package["version"] == common_events.__version__
    assert (tmp_path / "build/npm/dist/cjs/index.cjs").is_file()
