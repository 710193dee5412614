"""NATS Streaming (STAN) transport: a client of nats-streaming-server on nats-py.

``await connect("stan://127.0.0.1:4222", cluster_id="ticketing")`` gives a
``Transport``. The protocol messages live in ``protocol`` (data only), the session state
machine in ``session``, the PubAck pipeline in ``publishing``, subscriptions and their
messages in ``subscription``, the ``Transport`` adapter and ``connect`` in ``transport``,
the asyncio-nats-streaming drop-in in ``compat`` and the monitoring reader in ``monitor``.
"""

from common_events.transports.stan.protocol import SessionSubjects, StartPosition
from common_events.transports.stan.session import (
    ClientOptions,
    NoStreamingServerError,
    StanClient,
    new_client_id,
)
from common_events.transports.stan.subscription import StanMessage, StanSubscription
from common_events.transports.stan.transport import (
    StanTransport,
    connect,
    connect_nats,
    parse_stan_url,
    parse_url,
)

__all__ = [
    "ClientOptions",
    "NoStreamingServerError",
    "SessionSubjects",
    "StanClient",
    "StanMessage",
    "StanSubscription",
    "StanTransport",
    "StartPosition",
    "connect",
    "connect_nats",
    "new_client_id",
    "parse_stan_url",
    "parse_url",
]
