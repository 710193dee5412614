"""docs/conformance.md: its test module and its server fixture run the whole suite in a
project of their own, outside this repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from common_events.testing.conformance import Conformance, Features
from tests.docs.pages import ROOT, python_blocks

CONFORMANCE_DOC = ROOT / "docs" / "conformance.md"

SERVER_FIXTURE_TEST = """
import pytest

@pytest.mark.asyncio
async def test_the_fixture_gives_a_running_server(nats_server):
    assert nats_server.running and nats_server.url.startswith("nats://127.0.0.1:")
"""


def test_conformance_doc_examples_run_the_whole_suite_outside_this_repository(
    tmp_path: Path,
) -> None:
    blocks = [block.source for block in python_blocks(CONFORMANCE_DOC)]
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
        compile(block.source, str(CONFORMANCE_DOC), "exec")
