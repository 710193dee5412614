"""The NATS connection layer shared by the STAN and JetStream transports.

Server lists and their credentials (``servers``), connection options (``options``), the
one table from nats-py errors to ours (``errors``), connection state as objects
(``state``), the connection-lost fan-out (``lost``), opening a connection
(``connection``), and subscriptions whose payloads skip nats-py's per-message machinery
(``direct``). Secrets stop here: nothing this layer hands up holds a URL with a password
or token in it.
"""

from common_events.transports.nats_connection.connection import (
    ErrorListener,
    NatsConnection,
    open_nats,
)
from common_events.transports.nats_connection.direct import (
    DirectDeliveries,
    PayloadSubscription,
    subscribe_payloads,
)
from common_events.transports.nats_connection.eager import publish_eagerly, write_publish
from common_events.transports.nats_connection.errors import (
    JetStreamApiError,
    NatsFailure,
    Operation,
    classify_nats_error,
    is_auth_failure,
    is_tls_failure,
    map_nats_errors,
    permission_violation,
    translate_nats_error,
)
from common_events.transports.nats_connection.lost import ConnectionLostFanout
from common_events.transports.nats_connection.message_parser import PayloadTaker
from common_events.transports.nats_connection.options import NatsOptions
from common_events.transports.nats_connection.servers import ServerList, parse_servers, redact_url
from common_events.transports.nats_connection.state import (
    Closed,
    Connected,
    Connecting,
    ConnectionState,
    Lost,
    Reconnecting,
)

__all__ = [
    "Closed",
    "Connected",
    "Connecting",
    "ConnectionLostFanout",
    "ConnectionState",
    "DirectDeliveries",
    "ErrorListener",
    "JetStreamApiError",
    "Lost",
    "NatsConnection",
    "NatsFailure",
    "NatsOptions",
    "Operation",
    "PayloadSubscription",
    "PayloadTaker",
    "Reconnecting",
    "ServerList",
    "classify_nats_error",
    "is_auth_failure",
    "is_tls_failure",
    "map_nats_errors",
    "open_nats",
    "parse_servers",
    "permission_violation",
    "publish_eagerly",
    "redact_url",
    "subscribe_payloads",
    "translate_nats_error",
    "write_publish",
]
