"""A drop-in for ``asyncio-nats-streaming``'s ``stan.aio.client.Client``::

    from stan.aio.client import Client as STAN      # before
    from common_events.stan import Client as STAN   # after

It lives in ``common_events.transports.stan.compat``; this import path keeps working.
"""

from common_events.transports.stan.compat import (
    Client,
    ErrBadConnection,
    ErrBadSubscription,
    ErrConnectReqTimeout,
    Msg,
    PubAck,
    StanError,
    Subscription,
)

__all__ = [
    "Client",
    "ErrBadConnection",
    "ErrBadSubscription",
    "ErrConnectReqTimeout",
    "Msg",
    "PubAck",
    "StanError",
    "Subscription",
]
