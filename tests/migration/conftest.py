"""Fixtures of the migration tests: a NATS Streaming server with a file store (and its
monitor), a NATS server with JetStream, and the command line run as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common_events.core import stream_subjects
from common_events.migration.jetstream_stream import EventStream
from common_events.testing.servers import EmbeddedNatsServer, StanServer
from common_events.transports import jetstream
from common_events.transports import stan as stan_transport
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.stan import StanTransport
from tests.fixtures.stan import ServerFactory
from tests.interop.conftest import node_peer_installed  # noqa: F401 (a fixture)
from tests.support.node_process import node_installed

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "common_events.cli.main")
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture
def stan(stan_server_factory: ServerFactory) -> StanServer:
    """A NATS Streaming server with a file store (it keeps its clients and durables
    across a restart) and monitoring on."""
    return stan_server_factory(file_store=True)


@pytest.fixture
async def stan_client(stan: StanServer) -> AsyncIterator[StanTransport]:
    transport = await stan_transport.connect(stan.url, cluster_id=stan.cluster_id)
    yield transport
    await transport.close()


@pytest.fixture
async def js(nats_server: EmbeddedNatsServer) -> AsyncIterator[JetStreamTransport]:
    transport = await jetstream.connect(nats_server.url, subjects=stream_subjects())
    yield transport
    await transport.close()


@pytest.fixture
def stream(js: JetStreamTransport) -> EventStream:
    return EventStream(js)


def migrate_args(stan: StanServer, nats_server: EmbeddedNatsServer, *more: str) -> list[str]:
    return [
        "migrate",
        "--from", stan.url,
        "--cluster-id", stan.cluster_id,
        "--to", nats_server.url,
        "--stan-monitor", stan.monitor_url,
        *more,
    ]  # fmt: skip


@dataclass
class CliResult:
    status: int
    stdout: str
    stderr: str


async def run_cli(*args: str, within: float = 120.0) -> CliResult:
    """``common-events ARGS`` as a process of its own; its status and output."""
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


class CliProcess:
    """A long-running ``common-events`` command whose output lines are collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(process.stdout)),
            asyncio.create_task(self._read(process.stderr)),
        ]

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, pattern: str, within: float = 30.0) -> str:
        regex = re.compile(pattern)

        def found() -> bool:
            if self.process.returncode is not None and not any(
                regex.search(line) for line in self.lines
            ):
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.output}")
            return any(regex.search(line) for line in self.lines)

        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(found)
        except TimeoutError:
            raise AssertionError(
                f"no line matching {pattern!r} in {within}s:\n{self.output}"
            ) from None
        return next(line for line in self.lines if regex.search(line))

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)

    async def wait(self, within: float = 30.0) -> int:
        status = await asyncio.wait_for(self.process.wait(), within)
        await asyncio.gather(*self._readers, return_exceptions=True)
        return status


@pytest.fixture
async def cli_processes() -> AsyncIterator[Callable[..., Any]]:
    """Start ``common-events ARGS`` in the background; killed at teardown."""
    started: list[CliProcess] = []

    async def start(*args: str) -> CliProcess:
        process = await asyncio.create_subprocess_exec(
            *CLI,
            *args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        cli = CliProcess(process)
        started.append(cli)
        return cli

    yield start
    for cli in started:
        if cli.process.returncode is None:
            cli.kill()
        with contextlib.suppress(TimeoutError):
            await cli.wait(10)


async def until(check: Callable[[], Any], within: float = 30.0, what: str = "") -> None:
    """Poll ``check`` (sync or async) until it is true, at most ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


@pytest.fixture(scope="session")
def jetstream_peer() -> Path:
    install = NODE_DIR.parent / "install.sh"
    return node_installed("the Node JetStream peer", install, NODE_DIR / "node_modules", "nats")
