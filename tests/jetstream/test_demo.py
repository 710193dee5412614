"""``common-events demo`` on real JetStream: embedded by default, or a given server."""

from __future__ import annotations

import subprocess
import sys

from common_events.testing.servers import EmbeddedNatsServer
from tests.fixtures.jetstream import nats_server_binary


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common_events.cli.main", "demo", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_every_step_held(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout[result.stdout.index("step | what") :]
    assert table.count("| ok ") == 6
    assert "Every step held." in result.stdout


def test_demo_without_url_runs_on_an_embedded_jetstream_server() -> None:
    nats_server_binary()
    result = run_demo()
    assert_every_step_held(result)
    assert "Started nats-server with JetStream at nats://127.0.0.1:" in result.stdout
    assert "Stopped the embedded nats-server" in result.stdout


def test_demo_runs_against_a_given_jetstream_server(nats_server: EmbeddedNatsServer) -> None:
    result = run_demo("--url", nats_server.url)
    assert_every_step_held(result)
    assert "embedded" not in result.stdout
