"""``Migration``: copy the event channels of NATS Streaming into the JetStream stream and
carry the durable positions over.

Steps (``common-events migrate`` runs them; a dry run stops after the plan):

1. plan: per subject, what the channel holds (monitor) and what the stream holds of it
   (a scan of the copies' origin headers); per durable, the consumer and its start, or
   why it cannot be carried over;
2. copy: per subject, in STAN order, what the stream lacks (``migration/copy.py``);
3. check: scan what was stored since the plan and compare count and content hash with
   the channel's;
4. consumers: create each durable's consumer at the stream sequence of its first
   message (an existing consumer is left as it is).

One module per step: ``options``, ``plan``, ``copying`` (steps 2 and 3 for one
subject), ``consumers``, ``report``; ``run`` holds the connections (``Migration``) and
``migrate()``.
"""

from common_events.migration.defaults import default_monitor_url, event_subjects
from common_events.migration.migrate.consumers import ConsumerOutcome
from common_events.migration.migrate.copying import SubjectSummary
from common_events.migration.migrate.options import MigrationOptions
from common_events.migration.migrate.plan import MigrationPlan, SubjectPlan
from common_events.migration.migrate.report import MigrationReport
from common_events.migration.migrate.run import Migration, migrate

__all__ = [
    "ConsumerOutcome",
    "Migration",
    "MigrationOptions",
    "MigrationPlan",
    "MigrationReport",
    "SubjectPlan",
    "SubjectSummary",
    "default_monitor_url",
    "event_subjects",
    "migrate",
]
