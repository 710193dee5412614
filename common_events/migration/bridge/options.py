"""What a bridge is told: the two servers, the subjects of each direction, and the names
under which it resumes where it stopped."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from common_events.errors import ConfigurationError
from common_events.migration.positions import BRIDGE_DURABLE_PREFIX

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = BRIDGE_DURABLE_PREFIX
DEFAULT_DURABLE = BRIDGE_DURABLE_PREFIX


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    stan_url: str
    cluster_id: str
    jetstream_url: str
    to_jetstream: tuple[str, ...] = ()
    to_stan: tuple[str, ...] = ()
    client_id: str = DEFAULT_CLIENT_ID
    """The STAN client id: the same on every start, so the durables resume."""
    durable_name: str = DEFAULT_DURABLE
    stream: str = "EVENTS"
    ack_wait: float = 30.0
    drain_timeout: float = 10.0
    monitor_url: str | None = None
    """Reverse direction: where the channels' last sequences are read (default: port
    8222 of the STAN host)."""
    stan_options: dict[str, Any] = field(default_factory=dict)
    jetstream_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        both = sorted(set(self.to_jetstream) & set(self.to_stan))
        if both:
            raise ConfigurationError(
                f"{', '.join(both)}: bridged both ways. A subject is bridged one way: to "
                "JetStream while its publishers are on NATS Streaming, to NATS Streaming "
                "once they moved to JetStream (a message written to a channel by the "
                "bridge cannot be told apart from a STAN publisher's)"
            )
        if not self.to_jetstream and not self.to_stan:
            raise ConfigurationError("nothing to bridge: give subjects for either direction")
        if not self.durable_name.startswith(BRIDGE_DURABLE_PREFIX):
            raise ConfigurationError(
                f"the bridge's durable name must start with {BRIDGE_DURABLE_PREFIX!r} "
                "(migrate tells the bridge's durables from the services' by it)"
            )
