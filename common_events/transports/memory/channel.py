"""One subject's retained messages in the in-memory broker."""

from __future__ import annotations

from common_events.transports.memory.message import StoredMessage


class _Channel:
    """The retained messages of one subject: sequences ``first_sequence`` up to
    ``next_sequence - 1``, oldest first. Sequences go on after the oldest are dropped."""

    __slots__ = ("_head", "_messages", "first_sequence", "next_sequence")

    def __init__(self) -> None:
        # A list with a moving head: O(1) lookup by sequence, amortised O(1) drop.
        self._messages: list[StoredMessage | None] = []
        self._head = 0
        self.first_sequence = 1
        self.next_sequence = 1

    def __len__(self) -> int:
        return len(self._messages) - self._head

    def append(self, stored: StoredMessage) -> None:
        self._messages.append(stored)
        self.next_sequence += 1

    def get(self, sequence: int) -> StoredMessage | None:
        """The message stored under ``sequence``; ``None`` once dropped (or not yet)."""
        index = sequence - self.first_sequence
        if 0 <= index < len(self):
            return self._messages[self._head + index]
        return None

    def drop_oldest(self) -> StoredMessage:
        stored = self._messages[self._head]
        assert stored is not None
        self._messages[self._head] = None
        self._head += 1
        self.first_sequence += 1
        if self._head >= 1024 and self._head * 2 >= len(self._messages):
            del self._messages[: self._head]
            self._head = 0
        return stored

    def retained(self) -> tuple[StoredMessage, ...]:
        return tuple(stored for stored in self._messages[self._head :] if stored is not None)
