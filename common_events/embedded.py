"""The embedded ``nats-server``, kept at this import path for code that already uses it.

It lives in ``common_events.testing.servers`` with the other throwaway servers.
"""

from common_events.testing.servers.nats import (
    EmbeddedNatsServer,
    NatsServerNotFound,
    NatsServerStartError,
    find_nats_server,
)
from common_events.testing.servers.ports import free_loopback_port

__all__ = [
    "EmbeddedNatsServer",
    "NatsServerNotFound",
    "NatsServerStartError",
    "find_nats_server",
    "free_loopback_port",
]
