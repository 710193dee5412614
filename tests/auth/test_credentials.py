"""The credential options without a server: what is refused before connecting, and what
``repr`` shows (nothing of a credential, not even its path)."""

from __future__ import annotations

import importlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common_events.errors import AuthenticationError, ConfigurationError
from common_events.transports import jetstream, stan
from common_events.transports.jetstream import JetStreamOptions
from common_events.transports.nats_connection import NatsOptions
from common_events.transports.nats_connection import credentials as credentials_module
from common_events.transports.nats_connection.credentials import UserKey, read_seed_file
from tests.auth.support import SecretWatch, error_text

# Nothing listens here: every refusal below happens before a connection is tried.
URL = "nats://127.0.0.1:9"


def seed_file(path: Path, prefix: str = "USER") -> str:
    nkeys = importlib.import_module("nkeys")  # present: see conftest's nkeys_installed
    seed = nkeys.encode_seed(os.urandom(32), getattr(nkeys, f"PREFIX_BYTE_{prefix}")).decode()
    path.write_text(seed + "\n")
    return seed


def test_repr_shows_no_credential_nor_its_path(tmp_path: Path, watch: SecretWatch) -> None:
    seed = seed_file(tmp_path / "user.nk")
    watch.secrets.add(seed)
    for options in (
        NatsOptions(nkeys_seed=tmp_path / "user.nk"),
        NatsOptions(creds_file=tmp_path / "svc.creds"),
        JetStreamOptions(nkeys_seed=seed),  # even the seed itself, given by mistake
    ):
        text = repr(options)
        watch.check(text)
        assert "user.nk" not in text and "svc.creds" not in text


@pytest.mark.parametrize("option", ["creds_file", "nkeys_seed"])
async def test_a_credential_given_where_its_path_belongs_is_refused_unechoed(
    option: str, tmp_path: Path, watch: SecretWatch
) -> None:
    seed = seed_file(tmp_path / "user.nk")
    jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVQUJDIn0.c2lnbmF0dXJl"
    watch.secrets.update({seed, jwt})
    for value in (seed, jwt, f"-----BEGIN NATS USER JWT-----\n{jwt}\n"):
        for connect in (jetstream.connect, stan.connect):
            with pytest.raises(ConfigurationError) as raised:
                await connect(URL.replace("nats", "stan") if connect is stan.connect else URL,
                              **{option: value})  # fmt: skip
            assert f"{option} is the path of a file" in str(raised.value)
            watch.check(error_text(raised.value))


async def test_without_the_nkeys_package_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch: SecretWatch
) -> None:
    watch.secrets.add(seed_file(tmp_path / "user.nk"))

    def no_nkeys(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(credentials_module.importlib, "import_module", no_nkeys)
    with pytest.raises(ConfigurationError) as raised:
        await jetstream.connect(URL, nkeys_seed=tmp_path / "user.nk")
    assert "pip install 'common-events[nkeys]'" in str(raised.value)
    watch.check(error_text(raised.value))


def test_a_seed_that_is_not_a_users_is_refused(tmp_path: Path, watch: SecretWatch) -> None:
    watch.secrets.add(seed_file(tmp_path / "account.nk", "ACCOUNT"))
    with pytest.raises(AuthenticationError) as raised:
        read_seed_file(tmp_path / "account.nk")
    assert "not a user's (its public key starts with 'A')" in str(raised.value)
    (tmp_path / "garbage.nk").write_text("SUNOTASEED\n")
    with pytest.raises(AuthenticationError, match="holds no valid user NKey seed"):
        read_seed_file(tmp_path / "garbage.nk")
    watch.check(error_text(raised.value))


def test_the_hint_names_the_jwts_dates() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    key = UserKey(Path("/run/secrets/svc.creds"), "credentials file", "UABC", name="svc",
                  not_before=now + timedelta(days=1))  # fmt: skip
    assert key.refusal_hint(now) == (
        "check the credentials file /run/secrets/svc.creds: the JWT of user 'svc' is not "
        "valid before 2030-01-02T00:00:00Z"
    )
