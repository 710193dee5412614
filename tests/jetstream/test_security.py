"""Servers that say no: missing credentials and missing permissions give clear errors."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import nats
import pytest

from common_events.errors import AuthenticationError, PermissionDenied, SubscribeError
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.base import SubscriptionOptions
from common_events.transports.jetstream import JetStreamTransport
from tests.support.collect import Collector

Connect = Callable[..., Awaitable[JetStreamTransport]]
ServerFactory = Callable[..., Awaitable[EmbeddedNatsServer]]

TOKEN_CONFIG = 'authorization { token: "s3cret-token" }'

# In NATS a wildcard is a whole dot-separated token, so "ticket:*" would be a literal
# subject; "publish only ticket:*" is spelled out as the two ticket subjects.
PERMISSIONS_CONFIG = """
authorization {
  users = [
    {
      user: tickets, password: tickets-pw,
      permissions: {
        publish: { allow: ["ticket:created", "ticket:updated", "$JS.API.>", "$JS.ACK.>"] },
        subscribe: { allow: ["_INBOX.>"] }
      }
    },
    { user: admin, password: admin-pw }
  ]
}
"""


async def test_a_token_server_refuses_a_client_without_the_token(
    nats_server_factory: ServerFactory, jetstream_connect: Connect
) -> None:
    server = await nats_server_factory(TOKEN_CONFIG)

    started = time.monotonic()
    with pytest.raises(AuthenticationError) as raised:
        await jetstream_connect(server.url)
    assert time.monotonic() - started < 5, "a refusal must not wait out reconnect attempts"
    message = str(raised.value)
    assert "refused the credentials" in message
    assert "Authorization Violation" in message
    assert "the server wants credentials" in message

    with pytest.raises(AuthenticationError, match="check the token"):
        await jetstream_connect(server.url, token="wrong")

    transport = await jetstream_connect(server.url, token="s3cret-token")
    assert (await transport.publish("ticket:created", b"{}")).sequence == 1


async def test_a_publish_outside_the_users_permissions_is_refused_and_not_stored(
    nats_server_factory: ServerFactory, jetstream_connect: Connect
) -> None:
    server = await nats_server_factory(PERMISSIONS_CONFIG)
    # The operator (admin) creates the stream; the tickets service only uses it.
    await jetstream_connect(server.url, user="admin", password="admin-pw")
    tickets = await jetstream_connect(
        server.url, user="tickets", password="tickets-pw", publish_timeout=30.0
    )

    ack = await tickets.publish("ticket:created", b'{"id":"t1"}')
    assert ack.sequence == 1

    started = time.monotonic()
    with pytest.raises(PermissionDenied) as raised:
        await tickets.publish("order:created", b'{"id":"o1"}')
    # Refused as soon as the server says so, not after the 30 s publish timeout.
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "'order:created'" in message
    assert "permissions violation" in message and "nothing was stored" in message

    admin = await nats.connect(server.url, user="admin", password="admin-pw")
    try:
        info = await admin.jsm().stream_info("EVENTS", subjects_filter="order:created")
    finally:
        await admin.close()
    assert info.state.messages == 1  # only the ticket
    assert not info.state.subjects or "order:created" not in info.state.subjects

    # The connection stays usable for what the user may do.
    assert (await tickets.publish("ticket:updated", b"{}")).sequence == 2


async def test_wrong_user_password_is_an_authentication_error(
    nats_server_factory: ServerFactory, jetstream_connect: Connect
) -> None:
    server = await nats_server_factory(PERMISSIONS_CONFIG)
    with pytest.raises(AuthenticationError, match="check the user and password"):
        await jetstream_connect(server.url, user="tickets", password="nope")


async def test_a_subscription_outside_the_users_permissions_is_refused_at_once(
    nats_server_factory: ServerFactory, jetstream_connect: Connect
) -> None:
    server = await nats_server_factory(PERMISSIONS_CONFIG)
    await jetstream_connect(server.url, user="admin", password="admin-pw")
    # The user may subscribe to _INBOX.> only; deliveries under another prefix are refused.
    tickets = await jetstream_connect(
        server.url, user="tickets", password="tickets-pw", deliver_prefix="deliveries"
    )
    with pytest.raises(SubscribeError, match="permissions violation for subscription"):
        await tickets.subscribe(
            "order:created", Collector(), SubscriptionOptions(durable_name="tickets-service")
        )
