"""Leaving NATS Streaming for JetStream: the copy, the durable positions and the bridge.

``common-events migrate`` and ``common-events bridge`` are the command-line faces of
this package; ``docs/migrating-to-jetstream.md`` is the cut-over guide. It sits above
the core (it uses both transports and knows the event subjects); importing
``common_events`` never imports it.

- ``migrate``: ``Migration`` plans, copies per subject in STAN order (payloads byte for
  byte, the origin in headers), checks counts and content hashes, and creates each
  durable queue group's JetStream consumer where the group stopped on STAN.
- ``bridge``: ``Bridge`` forwards live, STAN to JetStream and JetStream to STAN, with
  manual acks on both sides and nothing lost or doubled across restarts.
"""

from common_events.migration.migrate import (
    Migration,
    MigrationOptions,
    MigrationPlan,
    MigrationReport,
    default_monitor_url,
    event_subjects,
    migrate,
)
from common_events.migration.origin import (
    CHANNEL_HEADER,
    SEQUENCE_HEADER,
    TIMESTAMP_HEADER,
    ContentHash,
    Origin,
    origin_sequence,
)
from common_events.migration.positions import ConsumerSettings, ConsumerStart, DurableGroup

__all__ = [
    "CHANNEL_HEADER",
    "SEQUENCE_HEADER",
    "TIMESTAMP_HEADER",
    "ConsumerSettings",
    "ConsumerStart",
    "ContentHash",
    "DurableGroup",
    "Migration",
    "MigrationOptions",
    "MigrationPlan",
    "MigrationReport",
    "Origin",
    "default_monitor_url",
    "event_subjects",
    "migrate",
    "origin_sequence",
]
