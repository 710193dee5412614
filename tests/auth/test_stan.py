"""Authentication as deployed, on NATS Streaming.

nats-streaming-server v0.25.6 embeds nats-server v2.9, which runs in operator mode:
its NATS part reads the operator and a memory resolver from ``-c``, and the streaming
part connects to it with a ``.creds`` file of its own (``credentials`` in the ``-sc``
file; ``nkey_seed_file`` for an NKey). Clients of the same account then authenticate
with ``creds_file`` or ``nkeys_seed`` as on JetStream. A revocation reaches the embedded
server by regenerating the memory resolver's config and reloading it with SIGHUP.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

import common_events
from common_events.errors import AuthenticationError, ConnectionLost
from common_events.testing.servers import StanServer
from tests.auth.nsc import Operator, user_nkey
from tests.auth.refusals import Users, check_refusals, with_creds
from tests.auth.support import (
    SUBJECT,
    SecretWatch,
    assert_bus_secret_free,
    error_text,
    read_all,
    refused,
    stored,
)
from tests.fixtures.stan import ServerFactory

_RELOADED = "Reloaded server configuration"


class Streaming:
    """A streaming server whose NATS part trusts ``operator``; reloadable."""

    def __init__(self, factory: ServerFactory, operator: Operator, work: Path) -> None:
        self.operator = operator
        self.nats_config = work / "nats.conf"
        self.nats_config.write_text(operator.memory_resolver())
        stan_config = work / "stan.conf"
        stan_config.write_text(f'credentials: "{operator.user("streaming-server")}"\n')
        self.server: StanServer = factory(
            extra_args=("-c", str(self.nats_config), "-sc", str(stan_config))
        )

    @property
    def url(self) -> str:
        return self.server.url

    async def reload(self) -> None:
        """Regenerate the resolver's config from nsc, make the server read it (SIGHUP)
        and wait until it has: a client connecting in between may be refused."""
        self.nats_config.write_text(self.operator.memory_resolver())
        done = self.server.log().count(_RELOADED)
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGHUP)
        for _ in range(500):
            if self.server.log().count(_RELOADED) > done:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no reload within 5s:\n{self.server.log_tail()}")


@pytest.fixture
def streaming(stan_server_factory: ServerFactory, operator: Operator, tmp_path: Path) -> Streaming:
    return Streaming(stan_server_factory, operator, tmp_path)


async def test_operator_mode_works_on_the_embedded_nats_server(
    streaming: Streaming, operator: Operator, watch: SecretWatch
) -> None:
    # Added after the server started: in operator mode a user needs no server config,
    # its JWT is signed by the account.
    creds = operator.user("orders")
    async with await common_events.connect(streaming.url, creds_file=creds) as bus:
        ack = await bus.publish(SUBJECT, b'{"id":"t1"}')
        assert ack.guid
        assert_bus_secret_free(watch, bus)
    assert await stored(streaming.url, creds) == [b'{"id":"t1"}']


async def test_refused_credentials_say_what_to_check_and_store_nothing(
    stan_server_factory: ServerFactory,
    operator: Operator,
    foreign_operator: Operator,
    watch: SecretWatch,
    tmp_path: Path,
) -> None:
    users = Users.of(operator, foreign_operator)
    streaming = Streaming(stan_server_factory, operator, tmp_path)
    await check_refusals(watch, streaming.url, users)
    assert await stored(streaming.url, users.good) == []


async def test_a_user_revoked_while_connected_is_cut_off_and_stores_nothing_more(
    streaming: Streaming, operator: Operator, watch: SecretWatch
) -> None:
    good = operator.user("orders")
    doomed = operator.user("tickets")
    url = streaming.url
    async with await common_events.connect(url, creds_file=good) as bus, \
            await common_events.connect(url, creds_file=doomed) as cut:  # fmt: skip
        await cut.publish(SUBJECT, b"before")
        operator.revoke("tickets")
        await streaming.reload()
        lost = await asyncio.wait_for(cut.wait_lost(), 5)
        assert "refused the credentials" in str(lost)
        assert "user 'tickets' may have been revoked" in str(lost)
        # The session layer re-raises the loss as ConnectionLost with the same text; the
        # JetStream transport raises AuthenticationError (the session keeps its own type).
        with pytest.raises((AuthenticationError, ConnectionLost)) as raised:
            await cut.publish(SUBJECT, b"after")
        assert "check the credentials file" in str(raised.value)
        watch.check(error_text(raised.value), error_text(lost))
        await bus.publish(SUBJECT, b"still served")

    await refused(watch, with_creds(url, doomed), "user 'tickets' may have been revoked")
    assert await stored(url, good) == [b"before", b"still served"]


async def test_nkey_users_on_the_embedded_nats_server(
    stan_server_factory: ServerFactory, nsc_binary: Path, watch: SecretWatch, tmp_path: Path
) -> None:
    server_seed, seed, wrong = (tmp_path / f"{name}.nk" for name in ("server", "orders", "x"))
    keys = [user_nkey(nsc_binary, path) for path in (server_seed, seed, wrong)]
    for path in (server_seed, seed, wrong):
        watch.add_seed_file(path)
    users = ", ".join(f'{{ nkey: "{key}" }}' for key in keys[:2])
    nats_config = tmp_path / "nats.conf"
    nats_config.write_text(f"authorization {{ users: [ {users} ] }}\n")
    stan_config = tmp_path / "stan.conf"
    stan_config.write_text(f'nkey_seed_file: "{server_seed}"\n')
    server = stan_server_factory(extra_args=("-c", str(nats_config), "-sc", str(stan_config)))

    async with await common_events.connect(server.url, nkeys_seed=seed) as bus:
        await bus.publish(SUBJECT, b"signed")
        assert_bus_secret_free(watch, bus)
        assert await read_all(bus) == [b"signed"]
    await refused(watch, lambda: common_events.connect(server.url, nkeys_seed=wrong),
                  f"the server must list its public key {keys[2]}")  # fmt: skip
    async with await common_events.connect(server.url, nkeys_seed=seed) as bus:
        assert await read_all(bus) == [b"signed"]


async def test_a_revoked_users_publish_is_an_authentication_error(
    streaming: Streaming, operator: Operator
) -> None:
    doomed = operator.user("tickets")
    async with await common_events.connect(streaming.url, creds_file=doomed) as cut:
        operator.revoke("tickets")
        await streaming.reload()
        await asyncio.wait_for(cut.wait_lost(), 5)
        with pytest.raises(AuthenticationError):
            await cut.publish(SUBJECT, b"after")
