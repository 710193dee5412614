"""common_events: the ticketing system's event contracts and Publisher/Listener classes.

Events travel as plain camelCase JSON over NATS Streaming (``stan://``), JetStream
(``nats://``) or an in-process bus (``memory://``), byte for byte as the Node services
write them.
"""

from common_events.core import (
    Bus,
    DeadLetter,
    DeadLetterReason,
    Listener,
    Message,
    Publisher,
    connect,
    dead_letter_subject,
    run_service,
)
from common_events.errors import (
    AuthenticationError,
    BatchPublishError,
    CommonEventsError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ListenerDefinitionError,
    OutOfOrder,
    PermissionDenied,
    PublishError,
    PublishTimeout,
    SubscribeError,
    TransportClosed,
    TransportError,
)
from common_events.events import (
    EVENT_TYPES,
    CancelledOrderTicket,
    Event,
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    OrderTicket,
    PaymentCreatedEvent,
    Subjects,
    TicketCreatedEvent,
    TicketUpdatedEvent,
    UnknownSubjectError,
    VersionedEvent,
    event_type,
)
from common_events.transports.base import PublishAck, SubscriptionOptions

__version__ = "0.1.0"

__all__ = [
    "EVENT_TYPES",
    "AuthenticationError",
    "BatchPublishError",
    "Bus",
    "CancelledOrderTicket",
    "CommonEventsError",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLost",
    "DeadLetter",
    "DeadLetterReason",
    "Event",
    "ExpirationCompleteEvent",
    "Listener",
    "ListenerDefinitionError",
    "Message",
    "OrderCancelledEvent",
    "OrderCreatedEvent",
    "OrderStatus",
    "OrderTicket",
    "OutOfOrder",
    "PaymentCreatedEvent",
    "PermissionDenied",
    "PublishAck",
    "PublishError",
    "PublishTimeout",
    "Publisher",
    "Subjects",
    "SubscribeError",
    "SubscriptionOptions",
    "TicketCreatedEvent",
    "TicketUpdatedEvent",
    "TransportClosed",
    "TransportError",
    "UnknownSubjectError",
    "VersionedEvent",
    "__version__",
    "connect",
    "dead_letter_subject",
    "event_type",
    "run_service",
]
