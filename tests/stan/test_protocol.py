"""The protocol layer: bytes in, values out, no server needed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common_events.errors import ConfigurationError
from common_events.transports.stan import parse_stan_url, parse_url, protocol
from common_events.transports.stan import protocol_pb2 as pb
from common_events.transports.stan.transport import ack_wait_seconds

subjects = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
)
uint64 = st.integers(min_value=0, max_value=2**64 - 1)


def test_ack_bytes_are_the_wire_format_of_the_go_client() -> None:
    # Field 1 (subject, length-delimited) and field 2 (sequence, varint), as gogo
    # protobuf marshals pb.Ack{Subject: "foo", Sequence: 300}.
    assert protocol.encode_ack("foo", 300) == b"\x0a\x03foo\x10\xac\x02"


def test_connect_request_carries_protocol_one_and_ping_settings() -> None:
    data = protocol.encode_connect_request(
        client_id="tickets-1",
        heartbeat_inbox="_INBOX.hb",
        conn_id=b"conn",
        ping_interval=5,
        ping_max_out=3,
    )
    request = protocol.decode_connect_request(data)
    assert (request.clientID, request.heartbeatInbox, request.connID) == (
        "tickets-1",
        "_INBOX.hb",
        b"conn",
    )
    assert (request.protocol, request.pingInterval, request.pingMaxOut) == (1, 5, 3)


def test_connect_response_gives_every_subject_the_server_chose() -> None:
    data = pb.ConnectResponse(
        pubPrefix="_STAN.pub.X",
        subRequests="_STAN.sub.X",
        unsubRequests="_STAN.unsub.X",
        closeRequests="_STAN.close.X",
        subCloseRequests="_STAN.subclose.X",
        pingRequests="_STAN.ping.X",
        pingInterval=5,
        pingMaxOut=3,
        protocol=1,
    ).SerializeToString()
    response = protocol.decode_connect_response(data)
    assert response == protocol.ConnectResponse(
        subjects=protocol.SessionSubjects(
            pub_prefix="_STAN.pub.X",
            sub_requests="_STAN.sub.X",
            unsub_requests="_STAN.unsub.X",
            close_requests="_STAN.close.X",
            sub_close_requests="_STAN.subclose.X",
            ping_requests="_STAN.ping.X",
        ),
        ping_interval=5,
        ping_max_out=3,
        protocol_version=1,
        error="",
    )
    refused = pb.ConnectResponse(error="stan: clientID already registered").SerializeToString()
    assert protocol.decode_connect_response(refused).error == "stan: clientID already registered"


@given(subject=subjects, data=st.binary(max_size=512), guid=st.text(max_size=30))
def test_pub_msg_round_trips(subject: str, data: bytes, guid: str) -> None:
    encoded = protocol.encode_pub_msg(
        client_id="c", guid=guid, subject=subject, data=data, conn_id=b"id"
    )
    decoded = protocol.decode_pub_msg(encoded)
    assert (decoded.clientID, decoded.guid, decoded.subject, decoded.data, decoded.connID) == (
        "c",
        guid,
        subject,
        data,
        b"id",
    )


@given(guid=st.text(max_size=200), error=st.text(max_size=50))
def test_pub_ack_fast_path_agrees_with_protobuf(guid: str, error: str) -> None:
    data = pb.PubAck(guid=guid, error=error).SerializeToString()
    assert protocol.decode_pub_ack_fields(data) == (guid, error)
    assert protocol.decode_pub_ack(data) == protocol.PubAck(guid=guid, error=error)


@given(subject=subjects, sequence=uint64)
def test_ack_round_trips(subject: str, sequence: int) -> None:
    decoded = protocol.decode_ack(protocol.encode_ack(subject, sequence))
    assert (decoded.subject, decoded.sequence) == (subject, sequence)


@given(
    sequence=uint64,
    data=st.binary(max_size=256),
    timestamp=st.integers(min_value=0, max_value=2**62),
    redelivery_count=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_msg_proto_decodes_every_field(
    sequence: int, data: bytes, timestamp: int, redelivery_count: int
) -> None:
    raw = pb.MsgProto(
        sequence=sequence,
        subject="order:created",
        data=data,
        timestamp=timestamp,
        redelivered=redelivery_count > 0,
        redeliveryCount=redelivery_count,
    ).SerializeToString()
    msg = protocol.decode_msg(raw)
    assert (msg.sequence, msg.subject, msg.data, msg.timestamp) == (
        sequence,
        "order:created",
        data,
        timestamp,
    )
    assert (msg.redelivered, msg.redeliveryCount) == (redelivery_count > 0, redelivery_count)


@pytest.mark.parametrize(
    ("position", "wire_value"),
    [
        (protocol.StartPosition.NEW_ONLY, 0),
        (protocol.StartPosition.LAST_RECEIVED, 1),
        (protocol.StartPosition.TIME_DELTA_START, 2),
        (protocol.StartPosition.SEQUENCE_START, 3),
        (protocol.StartPosition.FIRST, 4),
    ],
)
def test_subscription_request_start_positions(
    position: protocol.StartPosition, wire_value: int
) -> None:
    data = protocol.encode_subscription_request(
        client_id="c",
        subject="ticket:updated",
        inbox="_INBOX.1",
        queue_group="orders-service",
        durable_name="orders-service",
        max_in_flight=16,
        ack_wait_seconds=5,
        start_position=position,
        start_sequence=7,
        start_time_delta_ns=1_000,
    )
    request = protocol.decode_subscription_request(data)
    assert request.startPosition == wire_value
    assert (request.qGroup, request.durableName, request.maxInFlight, request.ackWaitInSecs) == (
        "orders-service",
        "orders-service",
        16,
        5,
    )
    assert (request.startSequence, request.startTimeDelta) == (7, 1_000)


def test_no_queue_group_and_no_durable_are_empty_strings_on_the_wire() -> None:
    data = protocol.encode_subscription_request(
        client_id="c",
        subject="s",
        inbox="i",
        queue_group=None,
        durable_name=None,
        max_in_flight=1,
        ack_wait_seconds=1,
        start_position=protocol.StartPosition.NEW_ONLY,
    )
    request = protocol.decode_subscription_request(data)
    assert request.qGroup == "" and request.durableName == ""


def test_small_answers_decode() -> None:
    assert protocol.decode_pub_ack(pb.PubAck(guid="g", error="").SerializeToString()) == (
        protocol.PubAck(guid="g", error="")
    )
    assert protocol.decode_ping_response_error(b"") == ""
    assert protocol.decode_ping_response_error(
        pb.PingResponse(error="client has been replaced").SerializeToString()
    ) == "client has been replaced"
    assert protocol.decode_close_response_error(pb.CloseResponse().SerializeToString()) == ""
    response = protocol.decode_subscription_response(
        pb.SubscriptionResponse(ackInbox="_INBOX.ack").SerializeToString()
    )
    assert response == protocol.SubscriptionResponse(ack_inbox="_INBOX.ack", error="")


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(protocol.ProtocolError, match="MsgProto"):
        protocol.decode_msg(b"\xff\xff\xff")


@pytest.mark.parametrize(("seconds", "expected"), [(0.1, 1), (1, 1), (1.2, 2), (5, 5), (30, 30)])
def test_ack_wait_rounds_up_to_whole_seconds(seconds: float, expected: int) -> None:
    assert ack_wait_seconds(seconds) == expected


@pytest.mark.parametrize(
    ("url", "servers", "params"),
    [
        ("stan://127.0.0.1:4222", ("nats://127.0.0.1:4222",), {}),
        ("stan://nats-srv", ("nats://nats-srv:4222",), {}),
        ("nats-streaming://nats-srv", ("nats://nats-srv:4222",), {}),
        (
            "stan://a:4222,b:4223?cluster_id=ticketing",
            ("nats://a:4222", "nats://b:4223"),
            {"cluster_id": "ticketing"},
        ),
        ("stan://user:pw@host:1", ("nats://host:1",), {}),
    ],
)
def test_parse_stan_url(url: str, servers: tuple[str, ...], params: dict[str, str]) -> None:
    parsed = parse_stan_url(url)
    assert (parsed.servers, dict(parsed.query)) == (servers, params)


def test_parse_stan_url_takes_the_credentials_out_of_the_servers() -> None:
    parsed = parse_stan_url("stan://tickets:pw@a:1,b:2")
    assert (parsed.user, parsed.password, parsed.token) == ("tickets", "pw", None)
    assert parse_stan_url("stan://t0ken@a:1").token == "t0ken"
    assert "pw" not in repr(parsed)


@pytest.mark.parametrize("url", ["nats://x:4222", "stan://", "stan://h?colour=red"])
def test_parse_stan_url_refuses(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_stan_url(url)


def test_parse_url_is_deprecated_and_keeps_no_credentials() -> None:
    with pytest.warns(DeprecationWarning, match="parse_stan_url"):
        assert parse_url("stan://user:pw@host:1?cluster_id=c") == (
            ["nats://host:1"],
            {"cluster_id": "c"},
        )
