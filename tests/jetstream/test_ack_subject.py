"""What a JetStream delivery reads from its ack subject: the delivery count on every
delivery, the stream sequence and the timestamp when asked for, in both forms the
server writes (without and with a domain and an account hash)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from common_events.transports.jetstream.subscription import JetStreamMessage, ack_prefix

STAMP_NS = 1_700_000_000_123_456_789

PLAIN = "$JS.ACK.EVENTS.billing__ticket_created_0a1b2c3d4e"
DOMAIN = "$JS.ACK.hub.ACCHASH.EVENTS.billing__ticket_created_0a1b2c3d4e"


class Delivered:
    """The parts of nats-py's ``Msg`` a delivery reads."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.subject = "ticket:created"
        self.data = b"{}"
        self.headers: dict[str, str] | None = None


def delivery(reply: str) -> JetStreamMessage:
    return JetStreamMessage(Delivered(reply), client=Any, parking=Any, prefix=ack_prefix(reply))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply",
    [
        f"{PLAIN}.1.42.7.{STAMP_NS}.3",
        f"{DOMAIN}.1.42.7.{STAMP_NS}.3",
        f"{DOMAIN}.1.42.7.{STAMP_NS}.3.random-token",
    ],
)
def test_a_first_delivery(reply: str) -> None:
    message = delivery(reply)
    assert message.delivery_count == 1
    assert not message.redelivered
    assert message.sequence == 42
    assert message.timestamp == datetime.fromtimestamp(STAMP_NS / 1e9, UTC)


@pytest.mark.parametrize("prefix", [PLAIN, DOMAIN])
def test_a_redelivery_counts_past_nine(prefix: str) -> None:
    message = delivery(f"{prefix}.12.100042.9.{STAMP_NS}.0")
    assert message.delivery_count == 12
    assert message.redelivered
    assert message.sequence == 100042


def test_the_prefix_is_what_comes_before_the_delivery_count() -> None:
    assert ack_prefix(f"{PLAIN}.1.42.7.{STAMP_NS}.3") == PLAIN + "."
    assert ack_prefix(f"{DOMAIN}.1.42.7.{STAMP_NS}.3.tok") == DOMAIN + "."


@pytest.mark.parametrize("reply", ["_INBOX.abc", "$JS.ACK.too.short.1", "$JS.FC.x.y.z.1.2.3.4"])
def test_a_subject_that_is_not_an_ack_subject_is_refused(reply: str) -> None:
    with pytest.raises(ValueError, match="not a JetStream delivery"):
        ack_prefix(reply)
