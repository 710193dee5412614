"""An in-process broker with the delivery semantics of a real one.

Not a mock: messages are stored per subject with sequences, queue groups split work,
durable subscriptions resume where they left off, unacknowledged messages come back
after ``ack_wait`` with ``redelivered`` set, and no subscriber member holds more than
``max_in_flight`` unacknowledged messages. Services test listeners on it without a
server, and it is the first target of the conformance suite.

Durable state lives as long as the ``MemoryBroker`` object: share one broker between
transports to play several services in one process.

Like a real server it has limits: a message over ``max_payload`` bytes is refused (1 MiB
by default, as nats-server), and the oldest messages are dropped past ``max_messages``
or ``max_bytes`` (see ``MemoryBroker``), so a long test run does not grow without bound.

Modules: ``broker`` (``MemoryBroker`` and its limits), ``channel`` (one subject's
retained messages), ``state`` (a subscription's state, members and dispatch),
``message`` (stored and delivered messages), ``subscription`` and ``transport``
(``MemoryTransport`` and ``connect``).
"""

from common_events.transports.memory.broker import (
    _NO_HEADERS as _NO_HEADERS,
)
from common_events.transports.memory.broker import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_MAX_PAYLOAD,
    MemoryBroker,
)
from common_events.transports.memory.channel import _Channel as _Channel
from common_events.transports.memory.message import MemoryMessage, StoredMessage, message_size
from common_events.transports.memory.message import _Pending as _Pending
from common_events.transports.memory.state import _Member as _Member
from common_events.transports.memory.state import _SubscriptionState as _SubscriptionState
from common_events.transports.memory.state import logger as logger
from common_events.transports.memory.subscription import MemorySubscription
from common_events.transports.memory.transport import _LIMITS as _LIMITS
from common_events.transports.memory.transport import MemoryTransport, connect

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_MESSAGES",
    "DEFAULT_MAX_PAYLOAD",
    "MemoryBroker",
    "MemoryMessage",
    "MemorySubscription",
    "MemoryTransport",
    "StoredMessage",
    "connect",
    "message_size",
]
