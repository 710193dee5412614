"""The throwaway servers of ``common_events.testing.servers``: the embedded nats-server
the demo runs on (started from the wheel), and nats-streaming-server; both stopped and
reaped, also when the body fails or the parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import common_events.embedded
from common_events import connect
from common_events.testing import servers
from common_events.testing.servers import (
    EmbeddedNatsServer,
    NatsServerNotFound,
    ServerNotFound,
    StanServer,
    StanServerNotFound,
    find_nats_server,
    find_stan_server,
)
from tests.fixtures.jetstream import nats_server_binary
from tests.support.servers import require_binary


def alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may be slow to reap an orphan)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return "\nState:\tZ" not in status


def test_the_old_import_path_names_the_same_objects() -> None:
    for name in common_events.embedded.__all__:
        assert getattr(common_events.embedded, name) is getattr(servers, name)


def test_the_binary_comes_from_the_server_extra() -> None:
    binary = nats_server_binary()
    assert binary == find_nats_server()
    assert binary.name == "nats-server" and os.access(binary, os.X_OK)


async def test_the_server_runs_jetstream_on_loopback_and_leaves_nothing_behind() -> None:
    nats_server_binary()
    async with EmbeddedNatsServer() as server:
        assert server.url.startswith("nats://127.0.0.1:")
        pid = server.pid
        store = server.store_dir
        assert pid is not None and alive(pid)
        assert store is not None and store.is_dir()
        async with await connect(server.url) as bus:
            ack = await bus.publish("ticket:created", b"{}")
            assert ack.sequence == 1
    assert not server.running
    assert not alive(pid), "the process must be reaped"
    assert not store.exists(), "the temporary store must be removed"


async def test_the_server_is_stopped_when_the_body_fails() -> None:
    nats_server_binary()
    server = EmbeddedNatsServer()
    with pytest.raises(RuntimeError, match="boom"):
        async with server:
            raise RuntimeError("boom")
    assert not server.running


async def test_a_missing_binary_says_how_to_get_one(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(binary=tmp_path / "nats-server")
    with pytest.raises(NatsServerNotFound, match="does not exist") as raised:
        await server.start()
    assert isinstance(raised.value, ServerNotFound | FileNotFoundError)
    server.cleanup()


def test_a_missing_stan_server_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOPATH", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StanServerNotFound, match=r"install-stan-server\.sh"):
        find_stan_server()


SERVER_IN_A_CHILD = """
import asyncio, sys
from common_events.testing.servers import EmbeddedNatsServer

async def main():
    server = EmbeddedNatsServer(binary=sys.argv[1])
    await server.start()
    print(server.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the death signal is Linux's prctl")
def test_a_server_dies_with_its_parent() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER_IN_A_CHILD, str(nats_server_binary())],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        server_pid = int(child.stdout.readline())
        assert alive(server_pid)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 10
        while alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(server_pid), "the server outlived the process that started it"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_a_stan_server_starts_restarts_on_its_store_and_cleans_up() -> None:
    binary = require_binary(find_stan_server)
    async with StanServer(binary, file_store=True) as server:
        assert server.url.startswith("stan://127.0.0.1:")
        bus = await connect(server.url, cluster_id=server.cluster_id)
        await bus.publish("ticket:created", b"{}")
        await bus.close()
        first_pid = server.pid
        server.restart()
        assert server.pid != first_pid and server.running
        channels = server.monitor("/streaming/channelsz?channel=ticket:created")
        assert channels["msgs"] == 1, "the file store survived the restart"
        workdir = server.workdir
    assert not server.running
    assert first_pid is not None and not alive(first_pid)
    assert not workdir.exists(), "the temporary work directory must be removed"


def test_a_stan_server_that_cannot_start_shows_its_log(tmp_path: Path) -> None:
    binary = require_binary(find_stan_server)
    with pytest.raises(servers.StanServerStartError, match="exited") as raised:
        StanServer(binary, tmp_path, extra_args=("--no-such-option",)).start()
    assert isinstance(raised.value, RuntimeError)


def test_a_stan_server_whose_picked_port_was_taken_meanwhile_picks_others() -> None:
    import socket

    require_binary(servers.find_stan_server)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = StanServer(ready_timeout=15)
        # Another process took the picked monitoring port before the server bound it.
        taken = squatter.getsockname()[1]
        server.monitor_port = taken
        try:
            server.start()
            assert server.running
            assert server.monitor_port != taken
        finally:
            server.cleanup()


async def test_a_nats_server_whose_picked_port_was_taken_meanwhile_picks_others() -> None:
    import socket

    binary = nats_server_binary()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedNatsServer(binary=binary)
        taken = squatter.getsockname()[1]
        server.port = taken  # another process took the picked client port meanwhile
        try:
            await server.start()
            assert server.running
            assert server.port != taken
        finally:
            server.cleanup()
