"""What the stream holds of one channel: read from the copies' origin headers.

``SubjectLedger`` is filled by scanning a subject of the stream in order. It tells the
last STAN sequence copied (where the next run goes on), the content hash of the copies
(compared with the channel's), anything out of order or stored twice, and for each
durable position the stream sequence where a consumer must start: right after the copy
of the last message the group acknowledged, so that it gets every later message of the
subject, copied or published on JetStream since.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from common_events.migration.jetstream_stream import StoredMessage
from common_events.migration.origin import ContentHash

logger = logging.getLogger(__name__)


@dataclass
class SubjectLedger:
    subject: str
    first: int
    """The first STAN sequence the channel holds: copies of older ones are not hashed."""
    wanted: list[int] = field(default_factory=list)
    """STAN sequences where consumers resume (the first message each one gets)."""
    copies: int = 0
    """Copies in the stream whose origin the channel still holds."""
    older: int = 0
    """Copies of messages the channel no longer holds (removed by its limits)."""
    native: int = 0
    """Messages published on JetStream itself (no origin header)."""
    native_since_copy: int = 0
    """Of those, the ones after the last copy."""
    duplicates: int = 0
    out_of_order: int = 0
    last_origin: int = 0
    scanned_to: int = 0
    """The stream sequence of the last message scanned."""
    content: ContentHash = field(default_factory=ContentHash)
    starts: dict[int, int] = field(default_factory=dict)
    """Wanted STAN sequence -> the stream sequence after the copy of the one before it
    (1 while no earlier copy was seen)."""

    def __post_init__(self) -> None:
        self.wanted = sorted(set(self.wanted))
        self.starts = dict.fromkeys(self.wanted, 1)

    def add(self, message: StoredMessage) -> None:
        self.scanned_to = message.stream_sequence
        origin = message.origin
        if origin is None:
            self.native += 1
            self.native_since_copy += 1
            return
        if origin <= self.last_origin:
            if origin == self.last_origin:
                self.duplicates += 1
            else:
                self.out_of_order += 1
            return
        self.last_origin = origin
        self.native_since_copy = 0
        for wanted in self.wanted:
            if origin < wanted:
                self.starts[wanted] = message.stream_sequence + 1
        if origin < self.first:
            self.older += 1
            return
        self.copies += 1
        self.content.add(origin, message.data)

    @property
    def consistent(self) -> bool:
        return self.duplicates == 0 and self.out_of_order == 0
