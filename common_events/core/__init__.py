"""Publisher, Listener, Message, the failure policy, the bus and run_service."""

from common_events.core.bus import Bus, connect
from common_events.core.dead_letter import (
    DeadLetter,
    DeadLetterReason,
    dead_letter_subject,
)
from common_events.core.listener import Listener
from common_events.core.message import Message
from common_events.core.publisher import Publisher
from common_events.core.service import run_service

__all__ = [
    "Bus",
    "DeadLetter",
    "DeadLetterReason",
    "Listener",
    "Message",
    "Publisher",
    "connect",
    "dead_letter_subject",
    "run_service",
]
