"""Subscriptions whose payloads go straight from nats-py's parser to a callback.

For each message of a subscription nats-py decodes its subject and reply, parses its
headers, builds a ``Msg``, puts it on the subscription's ``asyncio.Queue`` and wakes the
subscription's task to take it off again. A NATS Streaming delivery needs none of that:
its inbox, reply and headers are all empty or known, and everything it carries is in the
payload (a ``MsgProto``). Taking the payloads where nats-py's parser hands a message over
(``Client._process_msg``) took a consume of 100,000 deliveries on one loopback server
from about 105,000 to 129,000 a second (``docs/benchmarks.md``); ``MessageParser`` takes
them a step earlier still.

``_process_msg`` is nats-py's own step between its parser and its subscriptions (2.10
through 2.16 at least; the dependency matrix runs on both ends). NATS Streaming's
connections are made with this client (``open_nats(..., direct_deliveries=True)``);
JetStream's, whose messages carry headers, keep nats-py's. A client this package did not
make (``NatsConnection.adopt``) is not a ``DirectDeliveries`` client either: its
subscriptions take the same callback through nats-py's ordinary path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common_events.transports.nats_connection.message_parser import (
    MessageParser,
    PayloadTaker,
    taken,
)


class DirectDeliveries(Client):
    """A nats-py client that can hand a subscription's payloads straight to a callback."""

    def __init__(self) -> None:
        super().__init__()
        self._payload_takers: dict[int, PayloadTaker] = {}
        self._ps = MessageParser(self)

    # Not a coroutine function, though nats-py's parser awaits it: a message of any other
    # subscription (JetStream's among them) is handed nats-py's own coroutine to await,
    # with no frame of ours in between, and a taken payload an awaitable that is done.
    def _process_msg(  # type: ignore[override]
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> Awaitable[None]:
        take = self._payload_takers.get(sid)
        if take is None:
            # Typed bytes in nats-py, whose parser passes None for a MSG without headers.
            return super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        taken(take, data)
        return _TAKEN


class _Taken:
    """An awaitable that is done when awaited (an asyncio future would be made for
    every message)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that returns at once


_TAKEN = _Taken()


class PayloadSubscription:
    """A NATS subscription whose payloads go to one callback; see the module."""

    def __init__(self, client: Client, subscription: Subscription, direct: bool) -> None:
        self._client = client
        self._subscription = subscription
        self.direct = direct
        """Payloads are taken from nats-py's parser (``False``: through its queue)."""

    async def unsubscribe(self) -> None:
        """Stop taking payloads; raises what nats-py's ``unsubscribe`` raises."""
        if isinstance(self._client, DirectDeliveries):
            self._client._payload_takers.pop(self._subscription._id, None)
        await self._subscription.unsubscribe()


async def subscribe_payloads(
    client: Client, subject: str, take: PayloadTaker
) -> PayloadSubscription:
    """Subscribe to ``subject`` and hand each message's payload to ``take``, never
    dropping one (the server bounds what it sends; NATS Streaming by max in flight)."""
    if isinstance(client, DirectDeliveries):
        # Without a callback nats-py starts no task for the subscription; its messages
        # never reach the subscription's queue, as the parser's hand-over takes them.
        subscription = await client.subscribe(subject, pending_msgs_limit=0, pending_bytes_limit=0)
        client._payload_takers[subscription._id] = take
        # Whatever came while nats-py was still sending the SUB waits in its queue.
        queued = subscription._pending_queue
        while not queued.empty():
            taken(take, queued.get_nowait().data)
        return PayloadSubscription(client, subscription, direct=True)

    async def take_message(message: Msg) -> None:
        take(message.data)

    subscription = await client.subscribe(
        subject, cb=take_message, pending_msgs_limit=0, pending_bytes_limit=0
    )
    return PayloadSubscription(client, subscription, direct=False)
