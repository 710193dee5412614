"""The dead-letter names, where ``common_events.core.dead_letter`` users import them.

They live in ``common_events.core.codec``, with the rest of the wire codec.
"""

from common_events.core.codec import (
    DEAD_LETTER_PREFIX,
    DeadLetter,
    DeadLetterReason,
    dead_letter_subject,
)

__all__ = ["DEAD_LETTER_PREFIX", "DeadLetter", "DeadLetterReason", "dead_letter_subject"]
