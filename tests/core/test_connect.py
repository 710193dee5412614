"""``connect()``: the URL picks the transport; the bus is an async context manager."""

from __future__ import annotations

from typing import Any

import pytest

from common_events import Bus, ConfigurationError, connect
from common_events.core import stream_subjects
from common_events.transports import memory
from common_events.transports.memory import MemoryBroker, MemoryTransport


async def test_memory_url_gives_a_bus_on_a_fresh_broker() -> None:
    async with await connect("memory://") as first, await connect("memory://") as second:
        assert isinstance(first, Bus)
        assert isinstance(first.transport, MemoryTransport)
        assert isinstance(second.transport, MemoryTransport)
        assert first.transport.broker is not second.transport.broker
        assert first.url == "memory://"
    assert first.closed and second.closed


async def test_memory_transports_can_share_a_broker() -> None:
    broker = MemoryBroker()
    async with await connect("memory://", broker=broker) as bus:
        assert isinstance(bus.transport, MemoryTransport)
        assert bus.transport.broker is broker


async def test_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMON_EVENTS_URL", "memory://")
    async with await connect() as bus:
        assert isinstance(bus.transport, MemoryTransport)


async def test_no_url_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMMON_EVENTS_URL", raising=False)
    with pytest.raises(ConfigurationError, match="COMMON_EVENTS_URL"):
        await connect()


async def test_unknown_scheme_is_a_clear_error_without_the_rest_of_the_url() -> None:
    with pytest.raises(ConfigurationError) as caught:
        await connect("kafka://admin:s3cret@127.0.0.1:9092")
    assert "'kafka://'" in str(caught.value)
    assert "stan://" in str(caught.value) and "nats://" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_the_transport_is_told_every_subject_and_its_dead_letter_subject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given: dict[str, Any] = {}
    real_connect = memory.connect

    async def recording_connect(
        url: str, *, subjects: tuple[str, ...], **options: Any
    ) -> MemoryTransport:
        given["subjects"] = subjects
        return await real_connect(url, subjects=subjects, **options)

    monkeypatch.setattr(memory, "connect", recording_connect)
    async with await connect("memory://"):
        pass
    assert given["subjects"] == stream_subjects()
    assert "dead-letter:ticket:created" in given["subjects"]


async def test_subjects_are_not_an_option_of_connect() -> None:
    with pytest.raises(TypeError, match="subjects"):
        await connect("memory://", subjects=("ticket:created",))


async def test_unknown_memory_option_is_rejected() -> None:
    with pytest.raises(TypeError, match="cluster_idd"):
        await connect("memory://", cluster_idd="x")


async def test_close_is_idempotent() -> None:
    bus = await connect("memory://")
    await bus.close()
    await bus.close()
    assert bus.closed
