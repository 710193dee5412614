"""``tls://`` (or ``tls=``) never talks to a server in the clear.

nats-py upgrades to TLS only when the server asks for it; a ``tls://`` URL pointed at a
plain server would otherwise send the credentials unencrypted. A recording proxy in
front of a real nats-server shows what crossed the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from common_events.embedded import EmbeddedNatsServer
from common_events.errors import ConnectError
from common_events.transports.nats_connection import NatsOptions, open_nats, parse_servers

SECRET = "wire-Secret-93b"
AUTH = f'authorization {{\n  user: "alice"\n  password: "{SECRET}"\n}}\n'

ServerFactory = Callable[..., Awaitable[EmbeddedNatsServer]]


class RecordingProxy:
    """Forwards loopback TCP to a server and keeps what the client sent."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RecordingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool
        ) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    if record:
                        self.sent.extend(data)
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


@pytest.fixture
async def plain_server(nats_server_factory: ServerFactory) -> AsyncIterator[EmbeddedNatsServer]:
    yield await nats_server_factory(AUTH)


@pytest.mark.parametrize("how", ["tls-url", "tls-option"])
async def test_a_plain_server_is_refused_before_the_credentials_are_sent(
    plain_server: EmbeddedNatsServer, how: str
) -> None:
    async with RecordingProxy(plain_server.port) as proxy:
        scheme = "tls" if how == "tls-url" else "nats"
        servers = parse_servers(
            f"{scheme}://alice:{SECRET}@127.0.0.1:{proxy.port}",
            schemes={"nats": "nats", "tls": "tls"},
        )
        options = NatsOptions(connect_timeout=1.0)
        if how == "tls-option":
            options = NatsOptions(connect_timeout=1.0, tls=ssl.create_default_context())

        with pytest.raises(ConnectError, match="does not offer TLS"):
            await open_nats(servers, options)

    assert SECRET.encode() not in proxy.sent
    assert b"CONNECT" not in proxy.sent


async def test_nats_url_to_a_plain_server_still_connects(
    plain_server: EmbeddedNatsServer,
) -> None:
    async with RecordingProxy(plain_server.port) as proxy:
        servers = parse_servers(
            f"nats://alice:{SECRET}@127.0.0.1:{proxy.port}", schemes={"nats": "nats"}
        )
        connection = await open_nats(servers, NatsOptions(connect_timeout=1.0))
        try:
            await connection.client.flush()
        finally:
            await connection.close()

    assert b"CONNECT" in proxy.sent
