"""The in-memory broker: messages stored per subject, within the limits of a server,
and the subscription states that deliver them."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType

from common_events.errors import ConfigurationError, PublishError
from common_events.transports.base import MessageHandler, SubscriptionOptions
from common_events.transports.memory.channel import _Channel
from common_events.transports.memory.message import StoredMessage, message_size
from common_events.transports.memory.state import _SubscriptionState
from common_events.transports.memory.subscription import MemorySubscription

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""nats-server's default maximum payload."""
DEFAULT_MAX_MESSAGES = 1_000_000
DEFAULT_MAX_BYTES = 1024**3
"""Retention defaults: far more than a test suite publishes, far less than a machine has."""


class MemoryBroker:
    """The broker: stored messages per subject and the subscription states.

    Its limits are those of a server. A message larger than ``max_payload`` bytes
    (payload and headers, counted as nats-server counts them) is refused with
    ``PublishError``. Retention is that of a JetStream stream with limits retention (and
    of NATS Streaming's channel limits), over all subjects at once: past ``max_messages``
    messages or ``max_bytes`` bytes, the oldest are dropped, whether or not every
    subscription has had them or acknowledged them. A subscription that had not received
    a dropped message skips it; one delivered and not acknowledged is not delivered
    again. Sequences go on from where they were. The defaults (1,000,000 messages, 1 GiB)
    hold far more than a test suite publishes.
    """

    def __init__(
        self,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        for name, value in (
            ("max_messages", max_messages),
            ("max_bytes", max_bytes),
            ("max_payload", max_payload),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive whole number")
        if max_bytes < max_payload:
            raise ConfigurationError(
                f"max_bytes ({max_bytes}) must be at least max_payload ({max_payload}): "
                "the broker must be able to keep the largest message it takes"
            )
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_payload = max_payload
        self._channels: dict[str, _Channel] = {}
        self._order: deque[_Channel] = deque()
        """The channel of every retained message, in publish order: the oldest first."""
        self._stored_bytes = 0
        self._dropped = 0
        self._states: dict[tuple[str, ...], _SubscriptionState] = {}
        self._anonymous = itertools.count(1)

    def _channel(self, subject: str) -> _Channel:
        channel = self._channels.get(subject)
        if channel is None:
            channel = self._channels[subject] = _Channel()
        return channel

    @property
    def stored_messages(self) -> int:
        """Messages retained now, on every subject."""
        return len(self._order)

    @property
    def stored_bytes(self) -> int:
        """Bytes retained now (payloads and headers), on every subject."""
        return self._stored_bytes

    @property
    def dropped(self) -> int:
        """Messages dropped so far to keep within ``max_messages`` and ``max_bytes``."""
        return self._dropped

    def subjects(self) -> list[str]:
        """Every subject that holds messages, sorted."""
        return sorted(subject for subject, stored in self._channels.items() if len(stored))

    def messages(self, subject: str) -> tuple[StoredMessage, ...]:
        """Everything retained on ``subject``, oldest first."""
        channel = self._channels.get(subject)
        return channel.retained() if channel is not None else ()

    def publish(self, subject: str, data: bytes, headers: Mapping[str, str] | None) -> int:
        size = message_size(data, headers)
        if size > self.max_payload:
            raise PublishError(
                f"publish to {subject!r}: the message is larger than the server's maximum "
                f"payload ({size} > {self.max_payload} bytes); nothing was stored"
            )
        channel = self._channel(subject)
        stored = StoredMessage(
            subject=subject,
            sequence=channel.next_sequence,
            data=bytes(data),
            timestamp=datetime.now(UTC),
            headers=MappingProxyType(dict(headers)) if headers else _NO_HEADERS,
        )
        channel.append(stored)
        self._order.append(channel)
        self._stored_bytes += size
        while len(self._order) > self.max_messages or self._stored_bytes > self.max_bytes:
            self._drop_oldest()
        for state in self._states.values():
            if state.subject == subject:
                state.wake()
        return stored.sequence

    def _drop_oldest(self) -> None:
        # Each channel appends in publish order, so the oldest message of all is the
        # oldest of the channel that comes first here.
        dropped = self._order.popleft().drop_oldest()
        self._stored_bytes -= message_size(dropped.data, dropped.headers)
        self._dropped += 1

    def _state_key(self, subject: str, options: SubscriptionOptions) -> tuple[str, ...]:
        if options.queue_group is not None:
            return (subject, "queue", options.queue_group, options.durable_name or "")
        if options.durable_name is not None:
            return (subject, "durable", options.durable_name)
        return (subject, "plain", str(next(self._anonymous)))

    def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> MemorySubscription:
        key = self._state_key(subject, options)
        state = self._states.get(key)
        if state is None:
            state = _SubscriptionState(self, subject, key, options)
            self._states[key] = state
        else:
            # Like the real brokers, the durable keeps its position; a returning
            # member may change its ack wait and in-flight budget.
            state.options = options
        return MemorySubscription(self, state, state.add_member(handler))

    async def leave(self, subscription: MemorySubscription, *, keep_durable: bool) -> None:
        state = subscription.state
        await state.remove_member(subscription.member)
        if state.members:
            return
        if keep_durable and state.options.durable_name is not None:
            return
        self._states.pop(state.key, None)

    def has_durable(self, subject: str, durable_name: str, queue_group: str | None = None) -> bool:
        """Whether the broker keeps the durable state (for tests and tools)."""
        options = SubscriptionOptions(queue_group=queue_group, durable_name=durable_name)
        return self._state_key(subject, options) in self._states
