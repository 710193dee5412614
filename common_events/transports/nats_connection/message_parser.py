"""nats-py's protocol parser, with a shorter path for the frames a consume is made of.

nats-py's ``Parser`` tries a regular expression on every frame, keeps the frame's
fields in a dict, and cuts each frame off the front of its buffer on its own. A
NATS Streaming consume is almost nothing but ``MSG`` frames without headers, a few
hundred to a read; parsing them was more than a quarter of a consume's time. This
parser splits those frames by hand, cuts the buffer once per read, and hands a payload
whose subscription takes payloads (``direct``) to its taker in line. Every other frame
(``HMSG``, ``PING``, ``PONG``, ``+OK``, ``-ERR``, ``INFO``, anything malformed or
unknown) and everything after it in the same read goes to nats-py's own ``parse``,
which raises what it raises.

It keeps the parser's state where nats-py keeps it (``buf``, ``state``, ``needed``,
``header_needed``, ``msg_arg``), so either can carry on where the other stopped. The
same in nats-py 2.10 through 2.16; ``tests/nats_connection/test_message_parser.py``
checks, on random streams cut at random places, that it hands over what nats-py's
parser hands over, in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from nats.protocol.parser import AWAITING_CONTROL_LINE, AWAITING_MSG_PAYLOAD, Parser

if TYPE_CHECKING:
    from common_events.transports.nats_connection.direct import DirectDeliveries

logger = logging.getLogger(__name__)

PayloadTaker = Callable[[bytes], None]
"""Called in nats-py's reading task with each payload, in order; must not block."""

_MSG = b"MSG "
_CRLF = b"\r\n"


def taken(take: PayloadTaker, payload: bytes) -> None:
    """Hand ``payload`` to ``take``; what it raises is logged, never let into nats-py's
    reading task (which would drop the connection and reconnect)."""
    try:
        take(payload)
    except Exception:
        logger.exception("a subscription's payload taker raised; the payload is dropped")


class MessageParser(Parser):
    """``Parser`` for a ``DirectDeliveries`` client; see the module."""

    nc: DirectDeliveries

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf.extend(data)
        nc = self.nc
        takers = nc._payload_takers
        size = len(buf)
        pos = 0
        while pos < size:
            if self.state == AWAITING_MSG_PAYLOAD:
                if self.header_needed:
                    break  # an HMSG's: nats-py's
                end = pos + self.needed
                if size < end + 2:
                    break  # the rest of the payload is still coming
                payload = bytes(buf[pos:end])
                pos = end + 2
                self.state = AWAITING_CONTROL_LINE
                arg = self.msg_arg
                sid: int = arg["sid"]
                subject: bytes | bytearray = arg["subject"]
                reply: bytes | bytearray = arg["reply"]
            else:
                if not buf.startswith(_MSG, pos):
                    break
                eol = buf.find(_CRLF, pos)
                if eol < 0:
                    break  # the rest of the line is still coming
                fields = buf[pos + 4 : eol].split()
                if len(fields) == 3:
                    subject, sid_field, length = fields
                    reply = b""
                elif len(fields) == 4:
                    subject, sid_field, reply, length = fields
                else:
                    break  # malformed: nats-py's parser says so
                if not (sid_field.isdigit() and length.isdigit()):
                    break
                sid = int(sid_field)
                needed = int(length)
                start = eol + 2
                end = start + needed
                if size < end + 2:
                    # Wait for the payload where nats-py's parser would.
                    self.msg_arg = {"subject": bytes(subject), "sid": sid, "reply": bytes(reply)}
                    self.needed = needed
                    self.header_needed = 0
                    self.state = AWAITING_MSG_PAYLOAD
                    pos = start
                    break
                payload = bytes(buf[start:end])
                pos = end + 2
            take = takers.get(sid)
            if take is None:
                # Another subscription's: nats-py's own hand-over, which may wait.
                del buf[:pos]
                size -= pos
                pos = 0
                await nc._process_msg(sid, bytes(subject), bytes(reply), payload, None)
                if self.buf is not buf:
                    return  # reset meanwhile (a reconnect): the rest was the old connection's
                continue
            stats = nc.stats
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(payload)
            taken(take, payload)
        if pos:
            del buf[:pos]
        if buf and not (self.state == AWAITING_MSG_PAYLOAD and not self.header_needed):
            await super().parse()
