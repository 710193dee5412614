"""The NATS Streaming protocol as data: encoders and decoders, no I/O.

Every function here turns Python values into the bytes of one protocol message or back.
The session (``session.py``) decides when to send what; this module only knows the shape
of the messages. The field names follow ``protocol.proto`` (the Go client's
``pb/protocol.proto``), the Python names follow PEP 8.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from common_events.transports.stan import protocol_pb2 as pb

PROTOCOL_VERSION = 1
"""Protocol level this client speaks: 1 adds client PINGs and connection ids."""

DISCOVER_PREFIX = "_STAN.discover"
"""The only subject a client must know beforehand; every other one comes from the
server's ConnectResponse."""

ACK_PREFIX = "_STAN.acks"
"""Prefix of the inbox on which this client receives PubAcks."""


_M = TypeVar("_M", bound=Message)


class ProtocolError(ValueError):
    """Bytes that are not the protocol message they should be."""


class StartPosition(enum.IntEnum):
    """Where a new subscription starts in the channel (``StartPosition`` enum)."""

    NEW_ONLY = pb.NewOnly
    LAST_RECEIVED = pb.LastReceived
    TIME_DELTA_START = pb.TimeDeltaStart
    SEQUENCE_START = pb.SequenceStart
    FIRST = pb.First


@dataclass(frozen=True, slots=True)
class SessionSubjects:
    """The subjects the server chose for one client's requests (from its ConnectResponse)."""

    pub_prefix: str
    sub_requests: str
    unsub_requests: str
    close_requests: str
    sub_close_requests: str
    ping_requests: str


@dataclass(frozen=True, slots=True)
class ConnectResponse:
    """The subjects and ping settings the server gave this client, or its refusal."""

    subjects: SessionSubjects
    ping_interval: int
    ping_max_out: int
    protocol_version: int
    error: str


@dataclass(frozen=True, slots=True)
class SubscriptionResponse:
    ack_inbox: str
    error: str


@dataclass(frozen=True, slots=True)
class PubAck:
    guid: str
    error: str


def _parse(message: _M, data: bytes) -> _M:
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ProtocolError(f"not a {type(message).__name__}: {exc}") from exc
    return message


# -- connection -------------------------------------------------------------------------


def discover_subject(cluster_id: str) -> str:
    return f"{DISCOVER_PREFIX}.{cluster_id}"


def encode_connect_request(
    *,
    client_id: str,
    heartbeat_inbox: str,
    conn_id: bytes,
    ping_interval: int,
    ping_max_out: int,
) -> bytes:
    return pb.ConnectRequest(
        clientID=client_id,
        heartbeatInbox=heartbeat_inbox,
        protocol=PROTOCOL_VERSION,
        connID=conn_id,
        pingInterval=ping_interval,
        pingMaxOut=ping_max_out,
    ).SerializeToString()


def decode_connect_request(data: bytes) -> pb.ConnectRequest:
    return _parse(pb.ConnectRequest(), data)


def decode_connect_response(data: bytes) -> ConnectResponse:
    msg = _parse(pb.ConnectResponse(), data)
    return ConnectResponse(
        subjects=SessionSubjects(
            pub_prefix=msg.pubPrefix,
            sub_requests=msg.subRequests,
            unsub_requests=msg.unsubRequests,
            close_requests=msg.closeRequests,
            sub_close_requests=msg.subCloseRequests,
            ping_requests=msg.pingRequests,
        ),
        ping_interval=msg.pingInterval,
        ping_max_out=msg.pingMaxOut,
        protocol_version=msg.protocol,
        error=msg.error,
    )


def encode_ping(conn_id: bytes) -> bytes:
    return pb.Ping(connID=conn_id).SerializeToString()


def decode_ping_response_error(data: bytes) -> str:
    """The error of a PingResponse; an empty payload is a healthy answer."""
    if not data:
        return ""
    return _parse(pb.PingResponse(), data).error


def encode_close_request(client_id: str) -> bytes:
    return pb.CloseRequest(clientID=client_id).SerializeToString()


def decode_close_response_error(data: bytes) -> str:
    return _parse(pb.CloseResponse(), data).error


# -- publishing -------------------------------------------------------------------------


def publish_subject(pub_prefix: str, subject: str) -> str:
    return f"{pub_prefix}.{subject}"


def encode_pub_msg(
    *, client_id: str, guid: str, subject: str, data: bytes, conn_id: bytes
) -> bytes:
    return pb.PubMsg(
        clientID=client_id, guid=guid, subject=subject, data=data, connID=conn_id
    ).SerializeToString()


def _varint(value: int) -> bytes:
    # Sequences below 2**21 (one to three bytes) without the loop: every ack encodes one.
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, value: bytes) -> bytes:
    """A length-delimited field (wire type 2) whose key fits in one byte."""
    return bytes((tag << 3 | 2,)) + _varint(len(value)) + value if value else b""


class PubMsgEncoder:
    """``PubMsg`` bytes for one client and subject, built without message objects.

    Publishing is the hot path: the fields that do not change (client id, subject,
    connection id) are encoded once. The bytes are those protobuf writes for the same
    ``PubMsg`` (fields in number order), which the tests check.
    """

    __slots__ = ("_head", "_middle", "_tail")

    def __init__(self, *, client_id: str, subject: str, conn_id: bytes) -> None:
        self._head = _field(1, client_id.encode())
        self._middle = _field(3, subject.encode())
        self._tail = _field(6, conn_id)

    def encode(self, guid: str, data: bytes) -> bytes:
        guid_bytes = guid.encode()
        return b"".join(
            (
                self._head,
                b"\x12",
                _varint(len(guid_bytes)),
                guid_bytes,
                self._middle,
                b"\x2a" + _varint(len(data)) + data if data else b"",
                self._tail,
            )
        )


def decode_pub_msg(data: bytes) -> pb.PubMsg:
    return _parse(pb.PubMsg(), data)


def decode_pub_ack(data: bytes) -> PubAck:
    msg = _parse(pb.PubAck(), data)
    return PubAck(guid=msg.guid, error=msg.error)


def decode_pub_ack_fields(data: bytes) -> tuple[str, str]:
    """(guid, error) of a PubAck, without building message objects.

    Every publish gets one, so the usual shape (field 1, a guid shorter than 128 bytes,
    and nothing else) is read directly; anything else goes through protobuf.
    """
    if len(data) >= 2 and data[0] == 0x0A and data[1] < 0x80 and len(data) == data[1] + 2:
        try:
            return data[2:].decode(), ""
        except UnicodeDecodeError:
            pass
    ack = decode_pub_ack(data)
    return ack.guid, ack.error


# -- subscribing ------------------------------------------------------------------------


def encode_subscription_request(
    *,
    client_id: str,
    subject: str,
    inbox: str,
    queue_group: str | None,
    durable_name: str | None,
    max_in_flight: int,
    ack_wait_seconds: int,
    start_position: StartPosition,
    start_sequence: int = 0,
    start_time_delta_ns: int = 0,
) -> bytes:
    return pb.SubscriptionRequest(
        clientID=client_id,
        subject=subject,
        qGroup=queue_group or "",
        inbox=inbox,
        maxInFlight=max_in_flight,
        ackWaitInSecs=ack_wait_seconds,
        durableName=durable_name or "",
        startPosition=pb.StartPosition.Name(start_position),
        startSequence=start_sequence,
        startTimeDelta=start_time_delta_ns,
    ).SerializeToString()


def decode_subscription_request(data: bytes) -> pb.SubscriptionRequest:
    return _parse(pb.SubscriptionRequest(), data)


def decode_subscription_response(data: bytes) -> SubscriptionResponse:
    msg = _parse(pb.SubscriptionResponse(), data)
    return SubscriptionResponse(ack_inbox=msg.ackInbox, error=msg.error)


def encode_unsubscribe_request(
    *, client_id: str, subject: str, ack_inbox: str, durable_name: str | None
) -> bytes:
    """Body of both an unsubscribe and a subscription close; the subject it is sent to
    (``unsubRequests`` or ``subCloseRequests``) says which."""
    return pb.UnsubscribeRequest(
        clientID=client_id, subject=subject, inbox=ack_inbox, durableName=durable_name or ""
    ).SerializeToString()


def decode_msg(data: bytes) -> pb.MsgProto:
    """A delivery. The generated message is returned as is: it is the cheapest
    read-only record of the fields, and deliveries are the hot path."""
    try:
        return pb.MsgProto.FromString(data)
    except DecodeError as exc:
        raise ProtocolError(f"not a MsgProto: {exc}") from exc


def encode_ack(subject: str, sequence: int) -> bytes:
    return pb.Ack(subject=subject, sequence=sequence).SerializeToString()


class AckEncoder:
    """``Ack`` bytes for the deliveries of one subject: the subject is encoded once."""

    __slots__ = ("_head",)

    def __init__(self, subject: str) -> None:
        self._head = _field(1, subject.encode()) + b"\x10"

    def encode(self, sequence: int) -> bytes:
        if sequence == 0:
            return self._head[:-1]
        return self._head + _varint(sequence)


def decode_ack(data: bytes) -> pb.Ack:
    return _parse(pb.Ack(), data)
