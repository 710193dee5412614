"""``MessageParser`` hands over what nats-py's own parser hands over, in the same order,
however the stream is cut into reads; and hands a taken subscription's payloads to its
taker without nats-py's ``_process_msg``."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from common_events.transports.nats_connection.message_parser import MessageParser

TAKEN_SIDS = (1, 2)
OTHER_SIDS = (3, 40)


class RecordingClient:
    """What a parser calls on its client, recorded; sids 1 and 2 take payloads."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.process_msg_calls = 0
        self.stats = {"in_msgs": 0, "in_bytes": 0}
        self._payload_takers = {sid: self._taker(sid) for sid in TAKEN_SIDS}

    def _taker(self, sid: int) -> Any:
        return lambda payload: self.events.append(("taken", sid, payload))

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        self.process_msg_calls += 1
        take = self._payload_takers.get(sid)
        if take is not None:
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
            take(data)
            return
        self.events.append(("msg", sid, bytes(subject), bytes(reply), data, headers))

    async def _process_ping(self) -> None:
        self.events.append(("ping",))

    async def _process_pong(self) -> None:
        self.events.append(("pong",))

    async def _process_err(self, text: str) -> None:
        self.events.append(("err", text))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.events.append(("info", info))


subjects = st.text("abcxyz.>*_-0123456789", min_size=1, max_size=12)
payloads = st.binary(max_size=60)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["msg", "msg", "msg", "hmsg", "ping", "pong", "ok", "info"]))
    sid = draw(st.sampled_from(TAKEN_SIDS + OTHER_SIDS))
    subject = draw(subjects).encode()
    payload = draw(payloads)
    reply = draw(st.one_of(st.just(b""), subjects.map(str.encode)))
    gap = draw(st.sampled_from([b" ", b"  ", b"\t"]))
    if kind == "msg":
        size = str(len(payload)).encode()
        fields = [subject, str(sid).encode(), *([reply] if reply else []), size]
        return b"MSG" + gap + gap.join(fields) + b"\r\n" + payload + b"\r\n"
    if kind == "hmsg":
        header = b"NATS/1.0\r\nKey: value\r\n\r\n"
        fields = [subject, str(sid).encode(), *([reply] if reply else [])]
        sizes = f"{len(header)} {len(header) + len(payload)}".encode()
        return b"HMSG " + b" ".join([*fields, sizes]) + b"\r\n" + header + payload + b"\r\n"
    if kind == "info":
        return b"INFO " + json.dumps({"server_id": subject.decode()}).encode() + b"\r\n"
    return {"ping": b"PING\r\n", "pong": b"PONG\r\n", "ok": b"+OK\r\n"}[kind]


def cut(stream: bytes, places: list[int]) -> list[bytes]:
    bounds = [0, *sorted({p % (len(stream) + 1) for p in places}), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


async def handed_over(parser_type: type[Parser], reads: list[bytes]) -> RecordingClient:
    client = RecordingClient()
    parser = parser_type(client)
    for data in reads:
        await parser.parse(data)
    return client


@settings(max_examples=300, deadline=None)
@given(
    stream=st.lists(frames(), min_size=1, max_size=25).map(b"".join),
    places=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
async def test_any_stream_cut_anywhere_is_handed_over_as_nats_py_hands_it_over(
    stream: bytes, places: list[int]
) -> None:
    reads = cut(stream, places)
    ours = await handed_over(MessageParser, reads)
    theirs = await handed_over(Parser, reads)
    assert ours.events == theirs.events
    assert ours.stats == theirs.stats


async def test_a_taken_payload_goes_to_its_taker_without_nats_py_s_hand_over() -> None:
    stream = b"".join(
        f"MSG _INBOX.a {sid} {len(body)}\r\n".encode() + body + b"\r\n"
        for sid, body in [(1, b"one"), (2, b"two"), (1, b"three")]
    )
    client = await handed_over(MessageParser, [stream])
    assert client.events == [("taken", 1, b"one"), ("taken", 2, b"two"), ("taken", 1, b"three")]
    assert client.process_msg_calls == 0
    assert client.stats == {"in_msgs": 3, "in_bytes": 11}


async def test_a_payload_cut_in_two_is_taken_once_it_is_whole() -> None:
    parser = MessageParser(RecordingClient())  # type: ignore[arg-type]
    client: RecordingClient = parser.nc  # type: ignore[assignment]
    await parser.parse(b"MSG _INBOX.a 1 10\r\n01234")
    assert client.events == []
    await parser.parse(b"56789\r\nMSG _INBOX.a 2 1\r\nx\r\n")
    assert client.events == [("taken", 1, b"0123456789"), ("taken", 2, b"x")]
    assert parser.buf == bytearray()


@pytest.mark.parametrize("garbage", [b"NOPE\r\n", b"MSG a b c d e f\r\n", b"MSG a x 3\r\nabc\r\n"])
async def test_what_nats_py_calls_a_protocol_error_still_is_one(garbage: bytes) -> None:
    for parser_type in (Parser, MessageParser):
        with pytest.raises(ProtocolError):
            await handed_over(parser_type, [b"MSG _INBOX.a 1 2\r\nok\r\n" + garbage])


async def test_a_reset_while_another_subscription_s_message_is_handed_over_ends_the_read() -> None:
    # nats-py resets its parser on reconnecting; what was left of the read belongs to the
    # connection that is gone, and the parser starts the new one from a clean state.
    stream = (
        b"MSG other 3 1\r\na\r\n"  # not taken: handed to _process_msg, which resets
        b"MSG _INBOX.a 1 1\r\nb\r\n"
        b"MSG _INBOX.a 1 10\r\nc"  # a payload cut short
    )
    results = []
    for parser_type in (Parser, MessageParser):
        client = RecordingClient()
        parser = parser_type(client)
        process_msg = client._process_msg

        async def resetting(*args: Any, parser: Parser = parser, then: Any = process_msg) -> None:
            await then(*args)
            parser.reset()

        client._process_msg = resetting  # type: ignore[method-assign]
        await parser.parse(stream)
        await parser.parse(b"MSG _INBOX.a 2 2\r\nok\r\n")
        results.append((client.events, parser.state, bytes(parser.buf)))
    assert results[0] == results[1]
    assert results[1][0] == [("msg", 3, b"other", b"", b"a", None), ("taken", 2, b"ok")]
