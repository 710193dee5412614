"""A user error is one line on stderr and a non-zero exit; ``--debug`` adds the
traceback."""

from __future__ import annotations

import argparse
import asyncio
import errno
import subprocess
import sys
from pathlib import Path

import pytest

from common_events.cli import main as cli
from common_events.errors import ConnectError
from common_events.testing.servers import EmbeddedNatsServer
from common_events.testing.servers.ports import free_loopback_port

NOT_A_DIRECTORY_PARENT = "/proc/nope"  # /proc takes no new directories, even for root


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common_events.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prefix}: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        (["schema", "export", NOT_A_DIRECTORY_PARENT], "common-events schema export"),
        (["schema", "typescript", "-o", f"{NOT_A_DIRECTORY_PARENT}/events.d.ts"],
         "common-events schema typescript"),
        (["schema", "npm", NOT_A_DIRECTORY_PARENT, "--name", "@ticketing/common-events"],
         "common-events schema npm"),
        (["asyncapi", "-o", f"{NOT_A_DIRECTORY_PARENT}/asyncapi.yaml"], "common-events asyncapi"),
    ],
)  # fmt: skip
def test_a_path_that_cannot_be_written_is_one_line(args: list[str], prefix: str) -> None:
    line = assert_one_line_error(run_cli(*args), prefix)
    assert line.endswith(f"No such file or directory: {NOT_A_DIRECTORY_PARENT}")


def test_debug_adds_the_traceback_before_or_after_the_command() -> None:
    for args in (
        ["--debug", "schema", "export", NOT_A_DIRECTORY_PARENT],
        ["schema", "export", NOT_A_DIRECTORY_PARENT, "--debug"],
    ):
        result = run_cli(*args)
        assert result.returncode == 1
        assert "Traceback (most recent call last)" in result.stderr
        assert "FileNotFoundError" in result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"common-events schema export: No such file or directory: {NOT_A_DIRECTORY_PARENT}"
        )


def test_an_unreachable_monitoring_port_is_one_line() -> None:
    port = free_loopback_port()
    line = assert_one_line_error(run_cli("monitor", f"127.0.0.1:{port}"), "common-events monitor")
    assert f"cannot read http://127.0.0.1:{port}" in line and "Connection refused" in line


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("nats://127.0.0.1:4222", "is not a monitoring address"),
        ("127.0.0.1:port", "the port is not a number"),
    ],
)
def test_a_bad_monitoring_address_is_one_line(address: str, says: str) -> None:
    line = assert_one_line_error(run_cli("monitor", address), "common-events monitor")
    assert says in line


async def test_a_client_port_given_to_monitor_is_named_as_such(
    nats_server: EmbeddedNatsServer,
) -> None:
    result = await asyncio.to_thread(run_cli, "monitor", f"127.0.0.1:{nats_server.port}")
    line = assert_one_line_error(result, "common-events monitor")
    assert "that is a client port, not the monitoring port" in line


@pytest.mark.parametrize("url", ["kafka://broker:9092", "127.0.0.1:4222"])
def test_a_bad_broker_url_for_the_demo_is_one_line(url: str) -> None:
    line = assert_one_line_error(run_cli("demo", "--url", url), "common-events demo")
    assert "not a broker URL" in line and "nats://" in line


def test_a_bad_broker_url_never_shows_its_password() -> None:
    result = run_cli("demo", "--url", "kafka://user:s3cret@broker:9092")
    assert "s3cret" not in result.stdout + result.stderr
    assert_one_line_error(result, "common-events demo")


def test_an_unreachable_broker_for_the_demo_exits_1_without_a_traceback() -> None:
    result = run_cli("demo", "--url", f"nats://127.0.0.1:{free_loopback_port()}")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "could not connect" in result.stdout + result.stderr


def test_unknown_schema_baseline_keeps_its_usage_status() -> None:
    result = run_cli("schema", "check", "--against", "/nope")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "neither a directory" in result.stderr


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"),
         "No such file or directory: /x"),
        (ConnectError("could not connect to\nNATS at nats://127.0.0.1:1"),
         "could not connect to NATS at nats://127.0.0.1:1"),
        (RuntimeError("boom"), "RuntimeError: boom (unexpected; --debug shows the traceback)"),
    ],
)  # fmt: skip
def test_describe_gives_one_line(error: BaseException, expected: str) -> None:
    assert cli.describe(error) == expected


def test_ctrl_c_exits_130_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(_args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    from common_events.cli import asyncapi

    monkeypatch.setattr(asyncapi, "run", interrupted)
    assert cli.main(["asyncapi"]) == cli.INTERRUPTED
    assert capsys.readouterr().err == "common-events asyncapi: interrupted\n"
