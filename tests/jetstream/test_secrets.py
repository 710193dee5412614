"""A password or token never leaves the connection layer.

Every way a JetStream connection is made or fails (credentials in a ``nats://`` or
``tls://`` URL or as options, a closed port, wrong credentials, the right ones through a
server restart, a connection lost for good) runs with every logger at DEBUG; the secret
must be in no log record, no exception text (causes included), no ``repr`` of the
transport or its options, and not in ``transport.url``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import common_events
from common_events.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
)
from common_events.testing.servers import EmbeddedNatsServer, free_loopback_port
from common_events.transports.jetstream import JetStreamOptions, JetStreamTransport
from tests.jetstream.test_tls import make_certificates
from tests.support.logs import attached

Connect = Callable[..., Awaitable[JetStreamTransport]]
ServerFactory = Callable[..., Awaitable[EmbeddedNatsServer]]

USER = "alice"
SECRET = f"pw-{uuid.uuid4().hex}"
WRONG = f"wrong-{uuid.uuid4().hex}"
TOKEN = f"tok-{uuid.uuid4().hex}"
SECRETS = (SECRET, WRONG, TOKEN)
USER_CONFIG = f'authorization {{ user: {USER}, password: "{SECRET}" }}'


class Everything(logging.Handler):
    """Keeps every record, formatted as a log file would show it, traceback included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.args))
        self.texts.append(repr(record.msg))

    def saw(self, part: str) -> bool:
        return any(part in text for text in self.texts)


@pytest.fixture
def records() -> Iterator[Everything]:
    with attached(Everything()) as handler:
        yield handler


def assert_secret_free(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into: {text}"


def error_text(error: BaseException) -> str:
    """What a traceback of ``error`` shows: its text, its causes and their contexts."""
    return "".join(traceback.format_exception(error)) + repr(error)


def assert_transport_secret_free(transport: JetStreamTransport) -> None:
    assert "***@" in transport.url or "@" not in transport.url
    assert_secret_free(transport.url, repr(transport), repr(transport.options))


async def expect_failure(
    connect: Connect, kind: type[BaseException], url: str, **options: object
) -> BaseException:
    with pytest.raises(kind) as raised:
        await connect(url, **options)
    assert_secret_free(error_text(raised.value))
    return raised.value


@pytest.fixture
async def user_server(nats_server_factory: ServerFactory) -> EmbeddedNatsServer:
    return await nats_server_factory(USER_CONFIG)


def with_credentials(url: str, credentials: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{credentials}@{rest}"


async def test_credentials_in_a_nats_url_or_as_options_never_show(
    user_server: EmbeddedNatsServer, jetstream_connect: Connect, records: Everything
) -> None:
    url = with_credentials(user_server.url, f"{USER}:{SECRET}")
    transport = await jetstream_connect(url)
    assert transport.url == with_credentials(user_server.url, "***")
    assert_transport_secret_free(transport)
    await transport.publish("ticket:created", b"{}")

    given = await jetstream_connect(user_server.url, user=USER, password=SECRET)
    assert_transport_secret_free(given)
    assert_secret_free(repr(JetStreamOptions(user=USER, password=SECRET, token=TOKEN)))

    # The core's bus logs the URL it connected to, and closes with it.
    async with await common_events.connect(url) as bus:
        assert_secret_free(bus.url, repr(bus))
    await transport.close()
    assert records.saw("connected to") and records.saw(" DEBUG ")
    assert_secret_free(*records.texts)


async def test_wrong_credentials_a_token_and_a_closed_port_never_show(
    user_server: EmbeddedNatsServer,
    nats_server_factory: ServerFactory,
    jetstream_connect: Connect,
    records: Everything,
) -> None:
    await expect_failure(
        jetstream_connect, AuthenticationError, with_credentials(user_server.url, f"{USER}:{WRONG}")
    )
    await expect_failure(
        jetstream_connect, AuthenticationError, user_server.url, user=USER, password=WRONG
    )
    # A lone user part is a token; refused by a user/password server.
    await expect_failure(
        jetstream_connect, AuthenticationError, with_credentials(user_server.url, WRONG)
    )

    token_server = await nats_server_factory(f'authorization {{ token: "{TOKEN}" }}')
    transport = await jetstream_connect(with_credentials(token_server.url, TOKEN))
    assert_transport_secret_free(transport)
    await transport.publish("ticket:created", b"{}")

    closed = f"127.0.0.1:{free_loopback_port()}"
    for url in (f"nats://{USER}:{SECRET}@{closed}", f"tls://{USER}:{SECRET}@{closed}"):
        error = await expect_failure(jetstream_connect, ConnectError, url, connect_timeout=1.0)
        assert closed in str(error)
    await expect_failure(
        jetstream_connect,
        ConnectError,
        f"nats://{closed}",
        user=USER,
        password=SECRET,
        connect_timeout=1.0,
    )
    # A URL that cannot be parsed is quoted without its credentials too.
    await expect_failure(jetstream_connect, ConfigurationError, f"nats://{USER}:{SECRET}@host:port")
    await expect_failure(jetstream_connect, ConfigurationError, f"http://{USER}:{SECRET}@{closed}")
    assert_secret_free(*records.texts)


async def test_credentials_in_a_tls_url_never_show(
    tmp_path: Path,
    nats_server_factory: ServerFactory,
    jetstream_connect: Connect,
    records: Everything,
) -> None:
    ca_cert, server_cert, server_key = make_certificates(tmp_path)
    server = await nats_server_factory(
        f'tls {{\n  cert_file: "{server_cert}"\n  key_file: "{server_key}"\n}}\n{USER_CONFIG}'
    )
    url = with_credentials(server.url.replace("nats://", "tls://"), f"{USER}:{SECRET}")

    # Without the CA the handshake fails; with it the credentials are checked.
    await expect_failure(jetstream_connect, ConnectError, url, connect_timeout=2.0)
    context = ssl.create_default_context(cafile=str(ca_cert))
    await expect_failure(
        jetstream_connect,
        AuthenticationError,
        with_credentials(server.url.replace("nats://", "tls://"), f"{USER}:{WRONG}"),
        tls=context,
    )
    transport = await jetstream_connect(url, tls=context)
    assert transport.url.startswith("tls://***@127.0.0.1:")
    assert_transport_secret_free(transport)
    await transport.publish("ticket:created", b"{}")
    assert_secret_free(*records.texts)


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[EmbeddedNatsServer]:
    server = EmbeddedNatsServer(store_dir=tmp_path / "store", config=USER_CONFIG)
    try:
        await server.start()
        yield server
    finally:
        server.cleanup()


async def wait_for_record(records: Everything, part: str, within: float = 20.0) -> None:
    # Polled: records may come from other threads (the server's log reader).
    async with asyncio.timeout(within):
        while not records.saw(part):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_reconnect_and_a_loss_never_show_the_credentials(
    restartable: EmbeddedNatsServer, jetstream_connect: Connect, records: Everything
) -> None:
    url = with_credentials(restartable.url, f"{USER}:{SECRET}")
    transport = await jetstream_connect(url, reconnect_time_wait=0.1, publish_timeout=20.0)
    fragile = await jetstream_connect(url, reconnect_time_wait=0.1, max_reconnect_attempts=2)
    lost: list[ConnectionLost] = []
    fragile.add_connection_lost_callback(lost.append)
    await transport.publish("ticket:created", b"{}")

    await restartable.stop()
    await wait_for_record(records, "disconnected")
    await asyncio.sleep(1.0)  # long enough for the fragile one to give up
    await restartable.start()
    await wait_for_record(records, "reconnected")
    assert (await transport.publish("ticket:created", b"{}")).sequence == 2

    assert len(lost) == 1
    assert_secret_free(error_text(lost[0]))
    with pytest.raises(ConnectionLost) as raised:
        await fragile.publish("ticket:created", b"{}")
    assert_secret_free(error_text(raised.value))
    assert_transport_secret_free(transport)
    assert_transport_secret_free(fragile)
    await transport.close()
    await fragile.close()
    assert_secret_free(*records.texts)
