"""``common-events demo`` runs the ticketing scenario and says whether every step held."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from common_events.cli.demo import run_demo


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common_events.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_demo_on_the_memory_bus_holds_every_step() -> None:
    result = run_cli("demo", "--url", "memory://")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in range(1, 7):
        assert f"\n{step}. " in out or out.startswith(f"{step}. ")
    table = out[out.index("step | what") :]
    assert table.count("| ok ") == 6
    assert "FAILED" not in out
    assert "Every step held." in out
    assert "redelivered=True" in out
    assert "out of order" in out
    assert "dead-letter:ticket:created" in out
    # Read from the listeners' outcomes, not from their logs.
    assert "outcomes RetryLater then Acked" in out
    assert "outcome on ticket:updated: out of order, redelivery asked in 0.2s" in out
    assert "sent to dead-letter:ticket:created (invalid_event) and acked" in out


@pytest.mark.parametrize("module", ["demo", "scenario"])
def test_the_demo_reaches_the_broker_only_through_the_core(module: str) -> None:
    source = Path(importlib.import_module(f"common_events.cli.{module}").__file__ or "")
    imported = {
        node.module or ""
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    ours = {name for name in imported if name.startswith("common_events")}
    allowed = (
        "common_events.cli.",
        "common_events.core",
        "common_events.events",
        "common_events.errors",
        "common_events.testing.servers",
    )
    assert {name for name in ours if not name.startswith(allowed)} == set()


async def test_demo_reports_failure_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    status = await run_demo("kafka://127.0.0.1:1")
    assert status == 1
    assert "could not run" in capsys.readouterr().out


def test_cli_version_and_help() -> None:
    from common_events import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout
    assert "demo" in run_cli("--help").stdout
