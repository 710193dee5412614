"""Transports move bytes on subjects: memory, NATS Streaming (``stan``), JetStream."""

from common_events.transports.base import (
    MessageHandler,
    PublishAck,
    SubscriptionOptions,
    Transport,
    TransportMessage,
    TransportSubscription,
)

__all__ = [
    "MessageHandler",
    "PublishAck",
    "SubscriptionOptions",
    "Transport",
    "TransportMessage",
    "TransportSubscription",
]
