"""JetStream transport: ``connect("nats://127.0.0.1:4222", subjects=...)``.

One stream (``EVENTS`` by default, file storage) stores the subjects the core hands it
(every event subject and its dead-letter subject); each subscription is a push consumer
named after its durable name and subject, whose deliver group is the queue group.

Modules: ``admin`` (the stream and its consumers), ``publishing`` (with the routing
and reading of the stream's replies in ``replies`` and the window of ``publish_many`` in
``batch_window``), ``subscription``, ``transport`` (wiring them on one connection of
``nats_connection``), ``options``, the pure rules of ``streams`` and ``consumers``, and
``permissions``.
"""

from common_events.transports.jetstream.admin import StreamAdmin
from common_events.transports.jetstream.consumers import ConsumerPlan, consumer_name, plan_consumer
from common_events.transports.jetstream.options import SCHEMES, JetStreamOptions, parse_servers
from common_events.transports.jetstream.publishing import Publishing
from common_events.transports.jetstream.streams import (
    ExistingStream,
    StreamSpec,
    stream_differences,
    subject_matches,
)
from common_events.transports.jetstream.subscription import (
    JetStreamMessage,
    JetStreamSubscription,
)
from common_events.transports.jetstream.transport import JetStreamTransport, connect

__all__ = [
    "SCHEMES",
    "ConsumerPlan",
    "ExistingStream",
    "JetStreamMessage",
    "JetStreamOptions",
    "JetStreamSubscription",
    "JetStreamTransport",
    "Publishing",
    "StreamAdmin",
    "StreamSpec",
    "connect",
    "consumer_name",
    "parse_servers",
    "plan_consumer",
    "stream_differences",
    "subject_matches",
]
