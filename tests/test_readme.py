"""The README's quick start and the docs' examples work as written."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from common_events.testing.conformance import Conformance, Features

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
CONFORMANCE_DOC = ROOT / "docs" / "conformance.md"


def python_blocks(document: Path = README) -> list[str]:
    return re.findall(r"```python\n(.*?)```", document.read_text(), flags=re.DOTALL)


def test_readme_shows_the_two_commands_first() -> None:
    text = README.read_text()
    first_console = re.search(r"```console\n(.*?)```", text, flags=re.DOTALL)
    assert first_console is not None
    commands = [line.split("#")[0].strip() for line in first_console.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


def test_readme_usage_example_runs_and_stops_on_sigint(tmp_path: Path) -> None:
    (example,) = [block for block in python_blocks() if "run_service" in block]
    script = tmp_path / "service.py"
    script.write_text(example)
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the listener handled the event
        assert line.split() == ["t1", "Concert", "20.0"]
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


SERVER_FIXTURE_TEST = """
import pytest

@pytest.mark.asyncio
async def test_the_fixture_gives_a_running_server(nats_server):
    assert nats_server.running and nats_server.url.startswith("nats://127.0.0.1:")
"""


def test_conformance_doc_examples_run_the_whole_suite_outside_this_repository(
    tmp_path: Path,
) -> None:
    blocks = python_blocks(CONFORMANCE_DOC)
    (suite,) = [block for block in blocks if "(Conformance)" in block]
    (server_fixture,) = [block for block in blocks if "def nats_server" in block]
    (tmp_path / "test_my_transport.py").write_text(suite)
    (tmp_path / "conftest.py").write_text(server_fixture)
    (tmp_path / "test_server_fixture.py").write_text(SERVER_FIXTURE_TEST)

    # A project of its own: no configuration of this repository (pytest-asyncio in its
    # default strict mode), run as a transport author would.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tests = [name for name in dir(Conformance) if name.startswith("test_")]
    skipped = 1  # the in-progress ack the example's Features leave out
    summary = result.stdout.strip().splitlines()[-1]
    assert f"{len(tests) - skipped + 1} passed, {skipped} skipped" in summary, result.stdout
    assert Features().lacks("in_progress") in result.stdout


def test_every_python_block_of_the_conformance_doc_compiles() -> None:
    for block in python_blocks(CONFORMANCE_DOC):
        compile(block, str(CONFORMANCE_DOC), "exec")


def test_readme_npm_command_writes_the_package_at_this_version(tmp_path: Path) -> None:
    import json

    from common_events import __version__

    text = README.read_text()
    section = text[text.index("## For the Node services") :]
    (block,) = re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL)[:1]
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
    assert package["version"] == __version__
    assert (tmp_path / "build/npm/dist/cjs/index.cjs").is_file()
