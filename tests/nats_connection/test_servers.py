"""Server lists: credentials come out of the URL and never go back into one."""

from __future__ import annotations

import pytest

from common_events.errors import ConfigurationError
from common_events.transports.nats_connection import parse_servers, redact_url

STAN = {"stan": "nats", "nats-streaming": "nats"}
JETSTREAM = {"nats": "nats", "tls": "tls"}


def test_a_server_list_keeps_no_credentials_in_its_urls() -> None:
    servers = parse_servers("nats://alice:s3cret@a:4222,alice:s3cret@b", schemes=JETSTREAM)

    assert servers.servers == ("nats://a:4222", "nats://b:4222")
    assert (servers.user, servers.password, servers.token) == ("alice", "s3cret", None)
    assert "s3cret" not in repr(servers)
    assert "s3cret" not in servers.display


def test_a_lone_user_part_is_a_token() -> None:
    servers = parse_servers("stan://t0ken@host", schemes=STAN)

    assert servers.token == "t0ken"
    assert servers.user is None and servers.password is None
    assert servers.servers == ("nats://host:4222",)


def test_percent_encoded_credentials_are_decoded() -> None:
    servers = parse_servers("nats://al%40ice:p%3Ass@h:1", schemes=JETSTREAM)

    assert (servers.user, servers.password) == ("al@ice", "p:ss")


def test_query_options_and_per_entry_schemes() -> None:
    servers = parse_servers("stan://a:1,nats-streaming://b:2?cluster_id=x", schemes=STAN)
    assert servers.servers == ("nats://a:1", "nats://b:2")
    assert servers.query == {"cluster_id": "x"}

    tls = parse_servers("tls://a,tls://b:4443", schemes=JETSTREAM)
    assert tls.servers == ("tls://a:4222", "tls://b:4443")


def test_ipv6_hosts_keep_their_brackets() -> None:
    servers = parse_servers("nats://[::1]:4222,[::1]", schemes=JETSTREAM)

    assert servers.servers == ("nats://[::1]:4222", "nats://[::1]:4222")


@pytest.mark.parametrize(
    "url",
    [
        "http://u:s3cret@h:1",
        "nats://u:s3cret@",
        "nats://u:s3cret@h:port",
        "nats://u:s3cret@a,u:other@b",
        "nats://u:s3cret@a,http://b",
    ],
)
def test_bad_urls_are_refused_without_showing_the_secret(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_servers(url, schemes=JETSTREAM)

    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("nats://u:s3cret@a:1,u:s3cret@b:2?x=1", "nats://***@a:1,***@b:2?x=1"),
        ("stan://s3cret@h", "stan://***@h"),
        ("tls://h:1", "tls://h:1"),
        ("nats://a:1,nats://u:s3cret@b:2", "nats://a:1,nats://***@b:2"),
        ("not a url u:s3cret@x", "***@x"),
    ],
)
def test_redact_url_hides_every_userinfo(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
