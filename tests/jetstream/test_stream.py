"""The event stream on a real server: created when missing, checked when present."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import nats
import pytest
from nats.js import api

from common_events.core.codec import stream_subjects
from common_events.errors import ConfigurationError, ConnectError, PublishError, StreamConflict
from common_events.testing.servers import EmbeddedNatsServer, free_loopback_port
from common_events.transports.jetstream import JetStreamTransport
from tests.fixtures.jetstream import nats_server_binary

Connect = Callable[..., Awaitable[JetStreamTransport]]
ServerFactory = Callable[..., Awaitable[EmbeddedNatsServer]]


async def stream_config(url: str, name: str = "EVENTS") -> api.StreamConfig:
    nc = await nats.connect(url)
    try:
        info = await nc.jsm().stream_info(name)
        return info.config
    finally:
        await nc.close()


async def add_stream(url: str, **config: object) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jsm().add_stream(api.StreamConfig(**config))  # type: ignore[arg-type]
    finally:
        await nc.close()


async def test_missing_stream_is_created_with_file_storage_and_every_subject(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    await jetstream_connect(nats_server.url)

    config = await stream_config(nats_server.url)
    assert sorted(config.subjects or []) == sorted(stream_subjects())
    assert config.storage == api.StorageType.FILE
    assert config.retention == api.RetentionPolicy.LIMITS
    assert config.num_replicas == 1


async def test_an_existing_matching_stream_is_used_as_it_is(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    await add_stream(
        nats_server.url,
        name="EVENTS",
        subjects=["*"],
        storage=api.StorageType.FILE,
        max_age=3600.0,
    )
    transport = await jetstream_connect(nats_server.url)
    ack = await transport.publish("ticket:created", b"{}")
    assert ack.stream == "EVENTS" and ack.sequence == 1
    config = await stream_config(nats_server.url)
    assert config.subjects == ["*"] and config.max_age == 3600.0


async def test_a_conflicting_stream_is_refused_with_what_differs_and_left_alone(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    await add_stream(
        nats_server.url,
        name="EVENTS",
        subjects=["ticket:created", "ticket:updated"],
        storage=api.StorageType.MEMORY,
    )
    before = await stream_config(nats_server.url)

    with pytest.raises(StreamConflict) as raised:
        await jetstream_connect(nats_server.url)

    message = str(raised.value)
    assert "stream EVENTS" in message
    assert "order:created" in message and "dead-letter:payment:created" in message
    assert "'memory'" in message and "file storage is needed" in message
    assert "Nothing was changed" in message
    assert await stream_config(nats_server.url) == before


async def test_replicas_that_differ_from_the_configuration_are_refused(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    await jetstream_connect(nats_server.url, duplicate_window=60.0)
    with pytest.raises(StreamConflict, match=r"1 replica\(s\), 3 configured"):
        await jetstream_connect(nats_server.url, replicas=3)
    with pytest.raises(StreamConflict, match="duplicate window is 60s, 30s configured"):
        await jetstream_connect(nats_server.url, duplicate_window=30.0)


async def test_subjects_owned_by_another_stream_are_reported(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    await add_stream(nats_server.url, name="LEGACY", subjects=["ticket:created"])
    with pytest.raises(StreamConflict, match="stream LEGACY"):
        await jetstream_connect(nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        names = [info.config.name for info in await nc.jsm().streams_info()]
    finally:
        await nc.close()
    assert names == ["LEGACY"]


async def test_a_custom_stream_name_is_used(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    transport = await jetstream_connect(nats_server.url, stream="TICKETING")
    ack = await transport.publish("order:created", b"{}")
    assert ack.stream == "TICKETING"


async def test_a_server_without_jetstream_is_refused_clearly(jetstream_connect: Connect) -> None:
    server = EmbeddedNatsServer(binary=nats_server_binary(), jetstream=False)
    try:
        await server.start()
        with pytest.raises(ConnectError, match="JetStream is not enabled"):
            await jetstream_connect(server.url)
    finally:
        server.cleanup()


async def test_nothing_listening_is_a_connect_error(jetstream_connect: Connect) -> None:
    url = f"nats://127.0.0.1:{free_loopback_port()}"
    with pytest.raises(ConnectError, match=re.escape(f"could not connect to NATS at {url}")):
        await jetstream_connect(url, connect_timeout=1.0)


async def test_a_server_list_with_a_dead_entry_still_connects(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    dead = f"nats://127.0.0.1:{free_loopback_port()}"
    transport = await jetstream_connect(f"{dead},{nats_server.url}", connect_timeout=1.0)
    assert (await transport.publish("ticket:created", b"{}")).sequence == 1


async def test_without_subjects_a_missing_stream_is_refused_not_created(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    with pytest.raises(ConfigurationError, match="no subjects were given"):
        await jetstream_connect(nats_server.url, subjects=None)
    nc = await nats.connect(nats_server.url)
    try:
        assert await nc.jsm().streams_info() == []
    finally:
        await nc.close()


async def test_without_subjects_an_existing_stream_is_used_as_it_is(
    nats_server: EmbeddedNatsServer, jetstream_connect: Connect
) -> None:
    await add_stream(nats_server.url, name="EVENTS", subjects=["ticket:created"])
    transport = await jetstream_connect(nats_server.url, subjects=None)
    assert (await transport.publish("ticket:created", b"{}")).sequence == 1
    with pytest.raises(PublishError, match="no JetStream stream stores 'order:created'"):
        await transport.publish("order:created", b"{}")
    # Its settings are still checked.
    with pytest.raises(StreamConflict, match="3 configured"):
        await jetstream_connect(nats_server.url, subjects=None, replicas=3)
