"""Publisher, Listener, Message, the codec, the failure policy, the bus and run_service."""

from common_events.core.bus import Bus, connect
from common_events.core.codec import (
    DEAD_LETTER_PREFIX,
    DeadLetter,
    DeadLetterReason,
    EventDecodeError,
    dead_letter_subject,
    decode_dead_letter,
    decode_event,
    encode_dead_letter,
    encode_event,
    stream_subjects,
)
from common_events.core.listener import Listener
from common_events.core.message import Message
from common_events.core.middleware import (
    DeliveryContext,
    HandleNext,
    Middleware,
    PublishContext,
    PublishNext,
    outcome_error,
    outcome_label,
)
from common_events.core.policy import (
    Acked,
    DeadLettered,
    DeliveryAttempt,
    FailurePolicy,
    HandlerResult,
    LeftForRedelivery,
    NotAcked,
    NotSettled,
    Outcome,
    OutOfOrderLater,
    RetryLater,
)
from common_events.core.publisher import Publisher
from common_events.core.service import RunningService, ServiceCompanion, run_service
from common_events.transports.base import PublishAck, SubscriptionOptions, TransportMessage

__all__ = [
    "DEAD_LETTER_PREFIX",
    "Acked",
    "Bus",
    "DeadLetter",
    "DeadLetterReason",
    "DeadLettered",
    "DeliveryAttempt",
    "DeliveryContext",
    "EventDecodeError",
    "FailurePolicy",
    "HandleNext",
    "HandlerResult",
    "LeftForRedelivery",
    "Listener",
    "Message",
    "Middleware",
    "NotAcked",
    "NotSettled",
    "OutOfOrderLater",
    "Outcome",
    "PublishAck",
    "PublishContext",
    "PublishNext",
    "Publisher",
    "RetryLater",
    "RunningService",
    "ServiceCompanion",
    "SubscriptionOptions",
    "TransportMessage",
    "connect",
    "dead_letter_subject",
    "decode_dead_letter",
    "decode_event",
    "encode_dead_letter",
    "encode_event",
    "outcome_error",
    "outcome_label",
    "run_service",
    "stream_subjects",
]
