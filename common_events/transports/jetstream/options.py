"""Options of the JetStream transport: the NATS connection's, plus the stream's and the
publish loop's."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, fields
from typing import Any

from common_events.errors import ConfigurationError
from common_events.transports.nats_connection import NatsOptions, ServerList
from common_events.transports.nats_connection import parse_servers as parse_server_list

logger = logging.getLogger(__name__)

SCHEMES = {"nats": "nats", "tls": "tls"}
"""URL schemes of the JetStream transport and the scheme nats-py is given for each."""

# Connection settings that are ours to set, not the user's.
_INTERNAL = frozenset({"skip_subject_validation"})


@dataclass(frozen=True, slots=True)
class JetStreamOptions(NatsOptions):
    """Everything ``connect(url, **options)`` accepts besides the URL and the subjects.

    The connection part (user, password, token, creds_file, nkeys_seed, tls,
    tls_hostname, name and the timeouts) is ``NatsOptions``; secrets never show in
    ``repr``. A user and password may also be in the URL (``nats://user:pass@host:4222``).
    ``creds_file`` is a ``.creds`` file of ``nsc generate creds`` (operator mode),
    ``nkeys_seed`` a file holding a user's NKey seed alone (docs/authentication.md).
    Times are in seconds.
    """

    # The connection defaults of this transport, kept from before the shared layer.
    connect_timeout: float = 5.0
    reconnect_time_wait: float = 0.5
    max_reconnect_attempts: int = 120
    """Per server, after the connection was made; ``-1`` retries forever."""

    stream: str = "EVENTS"
    replicas: int = 1
    duplicate_window: float | None = None
    """Window in which a repeated ``Nats-Msg-Id`` is stored once; ``None`` leaves the
    server default (two minutes) and accepts whatever an existing stream has."""

    publish_timeout: float = 10.0
    """Total time a publish may take, retries included, before ``PublishTimeout``."""
    publish_attempt_timeout: float = 2.0
    """Time one attempt waits for the stream's reply before it is sent again with the
    same ``Nats-Msg-Id`` (stored once thanks to the duplicate window)."""
    max_pending_publishes: int = 1024
    """Publishes waiting on the server at once; more wait their turn in the client."""
    request_timeout: float = 5.0
    """Timeout of JetStream API requests (stream and consumer management), and the bound
    on stopping a subscription's deliveries."""

    deliver_prefix: str = "_INBOX.common-events"
    """Subject prefix where push consumers deliver; a client needs subscribe permission
    on it (``_INBOX.>`` covers the default)."""
    ephemeral_inactive_threshold: float = 30.0
    """How long the server keeps a non-durable queue group's consumer without members."""

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> JetStreamOptions:
        options = dict(options)
        if "close_timeout" in options:
            del options["close_timeout"]
            warnings.warn(
                "the JetStream option close_timeout is deprecated and does nothing: the "
                "Listener drains once (drain_timeout) and a closing subscription no "
                "longer waits for its handler again",
                DeprecationWarning,
                stacklevel=3,  # from_kwargs < connect < the caller
            )
        known = {field.name for field in fields(cls)} - _INTERNAL
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown JetStream option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        result = cls(**options)
        result.validate()
        return result

    def validate(self) -> None:
        # Not super(): slotted dataclasses are rebuilt, which zero-argument super() misses.
        NatsOptions.validate(self)
        if not self.stream or any(ch in self.stream for ch in " .*>/\\\t\n"):
            raise ConfigurationError(f"invalid stream name {self.stream!r}")
        if self.replicas < 1 or self.replicas > 5:
            raise ConfigurationError(f"replicas must be between 1 and 5, not {self.replicas}")
        for name in ("publish_timeout", "publish_attempt_timeout", "request_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive")
        if self.max_pending_publishes < 1:
            raise ConfigurationError("max_pending_publishes must be at least 1")
        if self.duplicate_window is not None and self.duplicate_window <= 0:
            raise ConfigurationError("duplicate_window must be positive")


def server_list(url: str) -> ServerList:
    """The servers of a ``nats://`` or ``tls://`` URL, credentials taken out.

    A JetStream URL has no query options: they were always ignored, and still are (with a
    warning naming their keys, never their values).
    """
    servers = parse_server_list(url, schemes=SCHEMES)
    if servers.query:
        logger.warning(
            "query options of a JetStream URL are ignored (%s); pass options as keywords",
            ", ".join(sorted(servers.query)),
        )
    return servers


def parse_servers(url: str) -> list[str]:
    """Deprecated: the server URLs of ``url``, now without credentials.

    Use ``common_events.transports.nats_connection.parse_servers(url, schemes=...)``,
    which also returns the credentials, apart from the servers.
    """
    warnings.warn(
        "common_events.transports.jetstream.parse_servers is deprecated; use "
        "common_events.transports.nats_connection.parse_servers(url, schemes=SCHEMES)",
        DeprecationWarning,
        stacklevel=2,
    )
    return list(parse_server_list(url, schemes=SCHEMES).servers)
