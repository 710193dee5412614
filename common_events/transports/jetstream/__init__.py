"""JetStream transport: ``connect("nats://127.0.0.1:4222")``.

One stream (``EVENTS`` by default, file storage) stores every event subject and its
dead-letter subject; each subscription is a push consumer named after its durable name
and subject, whose deliver group is the queue group.
"""

from common_events.transports.jetstream.consumers import ConsumerPlan, consumer_name, plan_consumer
from common_events.transports.jetstream.options import JetStreamOptions, parse_servers
from common_events.transports.jetstream.streams import (
    ExistingStream,
    StreamSpec,
    event_subjects,
    stream_differences,
    subject_matches,
)
from common_events.transports.jetstream.subscription import (
    JetStreamMessage,
    JetStreamSubscription,
)
from common_events.transports.jetstream.transport import JetStreamTransport, connect

__all__ = [
    "ConsumerPlan",
    "ExistingStream",
    "JetStreamMessage",
    "JetStreamOptions",
    "JetStreamSubscription",
    "JetStreamTransport",
    "StreamSpec",
    "connect",
    "consumer_name",
    "event_subjects",
    "parse_servers",
    "plan_consumer",
    "stream_differences",
    "subject_matches",
]
