"""Authentication as deployed, on JetStream: ``.creds`` files of an ``nsc`` operator
(decentralised JWT authentication) and plain NKey seeds.

Accepted credentials store; refused ones (revoked, expired, of another operator, a seed
that is not the JWT's, not a credentials file at all) fail with one line that says what
to check, and nothing of theirs is stored: the stream is read back with a credential the
server accepts. A user revoked while connected (``nsc revocations add-user`` and
``nsc push``, as an operator revokes in production) is cut off at once, and its next
publish says why.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import common_events
from common_events.errors import AuthenticationError, ConfigurationError
from common_events.testing.servers import EmbeddedNatsServer
from tests.auth.nsc import Operator, secrets_of, user_nkey
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
from tests.fixtures.jetstream import ServerFactory, nats_server_binary


async def test_a_users_creds_file_is_accepted_and_never_shown(
    operator: Operator, nats_server_factory: ServerFactory, watch: SecretWatch
) -> None:
    creds = operator.user("orders")
    server = await nats_server_factory(operator.memory_resolver())
    async with await common_events.connect(server.url, creds_file=creds) as bus:
        ack = await bus.publish(SUBJECT, b'{"id":"t1"}')
        assert ack.sequence == 1
        assert_bus_secret_free(watch, bus)
        assert await read_all(bus) == [b'{"id":"t1"}']
    assert watch.saw(" DEBUG "), "the watch saw no DEBUG record: it proves nothing"


async def test_refused_credentials_say_what_to_check_and_store_nothing(
    operator: Operator,
    foreign_operator: Operator,
    nats_server_factory: ServerFactory,
    watch: SecretWatch,
    tmp_path: Path,
) -> None:
    users = Users.of(operator, foreign_operator)
    good, expired = users.good, users.expired
    server = await nats_server_factory(operator.memory_resolver())
    url = server.url

    await check_refusals(watch, url, users)

    # Files that cannot work are refused before anything is sent.
    jwt, _seed = secrets_of(good)
    _other_jwt, other_seed = secrets_of(expired)
    spliced = tmp_path / "spliced.creds"
    spliced.write_text(good.read_text().replace(secrets_of(good)[1], other_seed))
    await refused(watch, with_creds(url, spliced), "the seed in the credentials file",
                  "does not belong to its user JWT (user 'orders')")  # fmt: skip
    seed_only = tmp_path / "user.nk"
    user_nkey(operator.binary, seed_only)
    watch.add_seed_file(seed_only)
    await refused(watch, with_creds(url, seed_only), "holds no user JWT",
                  "looks like an NKey seed file: pass it as nkeys_seed")  # fmt: skip
    jwt_only = tmp_path / "jwt-only.creds"
    jwt_only.write_text(f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n")
    await refused(watch, with_creds(url, jwt_only), "holds no user NKey seed")
    await refused(watch, with_creds(url, tmp_path / "missing.creds"),
                  "cannot be read (No such file or directory)")  # fmt: skip

    assert await stored(url, good) == []


async def test_a_user_revoked_while_connected_is_cut_off_and_stores_nothing_more(
    operator: Operator, nats_server_factory: ServerFactory, watch: SecretWatch, tmp_path: Path
) -> None:
    good = operator.user("orders")
    doomed = operator.user("tickets")
    server = await nats_server_factory(operator.nats_resolver(tmp_path / "jwt"))
    operator.push(server.url)  # the account reaches the server as in production
    url = server.url

    async with await common_events.connect(url, creds_file=good) as bus, \
            await common_events.connect(url, creds_file=doomed) as cut:  # fmt: skip
        await cut.publish(SUBJECT, b"before")
        operator.revoke("tickets")
        started = time.monotonic()
        operator.push(url)
        lost = await asyncio.wait_for(cut.wait_lost(), 5)
        assert time.monotonic() - started < 3
        assert "refused the credentials" in str(lost)
        assert f"check the credentials file {doomed}" in str(lost)

        with pytest.raises(AuthenticationError) as raised:
            await cut.publish(SUBJECT, b"after")
        assert "user 'tickets' may have been revoked" in str(raised.value)
        watch.check(error_text(raised.value), error_text(lost))

        await bus.publish(SUBJECT, b"still served")  # the account's other users go on

    await refused(watch, with_creds(url, doomed), "user 'tickets' may have been revoked")
    assert await stored(url, good) == [b"before", b"still served"]
    # One clear line when the server cut the connection, not one per attempt.
    assert len(watch.saw("will not reconnect: NATS")) <= 3  # text, args, msg of one record


def nkey_users(*public_keys: str) -> str:
    users = ", ".join(f'{{ nkey: "{key}" }}' for key in public_keys)
    return f"authorization {{ users: [ {users} ] }}"


async def test_an_nkey_seed_is_accepted_and_a_wrong_one_refused(
    nsc_binary: Path, nats_server_factory: ServerFactory, watch: SecretWatch, tmp_path: Path
) -> None:
    seed, wrong = tmp_path / "orders.nk", tmp_path / "wrong.nk"
    public = user_nkey(nsc_binary, seed)
    wrong_public = user_nkey(nsc_binary, wrong)
    watch.add_seed_file(seed)
    watch.add_seed_file(wrong)
    server = await nats_server_factory(nkey_users(public))

    async with await common_events.connect(server.url, nkeys_seed=seed) as bus:
        await bus.publish(SUBJECT, b"signed")
        assert_bus_secret_free(watch, bus)

    await refused(watch, lambda: common_events.connect(server.url, nkeys_seed=wrong),
                  f"check the NKey seed file {wrong}",
                  f"the server must list its public key {wrong_public}")  # fmt: skip
    creds = tmp_path / "seed.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n")
    await refused(watch, lambda: common_events.connect(server.url, nkeys_seed=creds),
                  "is a .creds file", "pass it as creds_file")  # fmt: skip

    # The seed itself where its file's path belongs is refused without being echoed.
    text = await refused(
        watch, lambda: common_events.connect(server.url, nkeys_seed=seed.read_text().strip()),
        "nkeys_seed is the path of a file", kind=ConfigurationError,
    )  # fmt: skip
    assert "looks like the credential itself" in text
    await refused(
        watch, lambda: common_events.connect(server.url, nkeys_seed=seed, creds_file=creds),
        "either creds_file or nkeys_seed", kind=ConfigurationError,
    )  # fmt: skip
    userinfo = server.url.replace("nats://", "nats://someone:pw@")
    await refused(watch, lambda: common_events.connect(userinfo, nkeys_seed=seed),
                  "either nkeys_seed or a user", kind=ConfigurationError)  # fmt: skip

    async with await common_events.connect(server.url, nkeys_seed=seed) as bus:
        assert await read_all(bus) == [b"signed"]


async def test_a_reconnect_refused_for_its_credentials_gives_up_with_the_reason(
    nsc_binary: Path, watch: SecretWatch, tmp_path: Path
) -> None:
    """The server came back without this user (its key was rotated out while it was
    down): nats-py would retry for ever; the connection gives up after every server
    refused twice, with one warning and an ``AuthenticationError`` on the next call."""
    seed = tmp_path / "orders.nk"
    public = user_nkey(nsc_binary, seed)
    watch.add_seed_file(seed)
    other = user_nkey(nsc_binary, tmp_path / "other.nk")
    binary = nats_server_binary()
    first = EmbeddedNatsServer(config=nkey_users(public), binary=binary)
    second = EmbeddedNatsServer(port=first.port, config=nkey_users(other), binary=binary)
    try:
        await first.start()
        bus = await common_events.connect(first.url, nkeys_seed=seed, reconnect_time_wait=0.2)
        try:
            await first.stop()
            await second.start()
            lost = await asyncio.wait_for(bus.wait_lost(), 10)
            assert "refused the credentials" in str(lost)
            assert f"the server must list its public key {public}" in str(lost)
            with pytest.raises(AuthenticationError):
                await bus.publish(SUBJECT, b"refused")
        finally:
            await bus.close()
    finally:
        first.cleanup()
        second.cleanup()
    warnings = [t for t in watch.saw("refused the credentials on reconnect") if " WARNING " in t]
    assert len(warnings) == 1, warnings
