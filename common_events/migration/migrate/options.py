"""What a migration is told: the servers, which channels and durables, and how to copy."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from common_events.core.codec import dead_letter_subject
from common_events.migration.copy import DEFAULT_WINDOW
from common_events.migration.defaults import default_monitor_url, event_subjects
from common_events.migration.positions import ConsumerSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    stan_url: str
    cluster_id: str
    jetstream_url: str
    monitor_url: str | None = None
    """``None``: port 8222 of the STAN host."""
    subjects: tuple[str, ...] = ()
    """Channels to copy; empty: the six event subjects."""
    dead_letters: bool = False
    """Also copy the dead-letter channel of each subject."""
    consumers: bool = True
    copy: bool = True
    """``False``: create the consumers only, from what the stream holds (the bridge
    forwards the channels meanwhile); each waits until the stream holds its group's
    last acknowledged message, at most ``wait`` seconds."""
    queue_groups: tuple[str, ...] = ()
    """Carry over only these groups' durables (empty: every durable)."""
    wait: float = 30.0
    at_least_once: bool = False
    settings: ConsumerSettings = field(default_factory=ConsumerSettings)
    window: int = DEFAULT_WINDOW
    stan_options: dict[str, Any] = field(default_factory=dict)
    jetstream_options: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> tuple[str, ...]:
        base = self.subjects or event_subjects()
        if self.dead_letters:
            base += tuple(dead_letter_subject(s) for s in base if not s.startswith("dead-"))
        return tuple(dict.fromkeys(base))

    @property
    def monitor(self) -> str:
        return self.monitor_url or default_monitor_url(self.stan_url)
