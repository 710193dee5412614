"""How a NATS connection is made: the options both NATS transports pass to nats-py."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path

from common_events.errors import ConfigurationError
from common_events.transports.nats_connection.credentials import looks_like_secret
from common_events.transports.nats_connection.servers import ServerList


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """Settings of one nats-py connection. Secrets never show in ``repr``.

    Times are in seconds. ``max_reconnect_attempts`` counts per server after the first
    connection was made (``-1``: forever); the first connection tries each server
    quickly and reports why none answered.
    """

    name: str | None = None
    """Connection name shown by the server's monitoring pages (``connz``)."""
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | Path | None = field(default=None, repr=False)
    """A NATS ``.creds`` file (user JWT and its NKey seed), as ``nsc generate creds`` makes
    it for decentralised (operator mode) authentication."""
    nkeys_seed: str | Path | None = field(default=None, repr=False)
    """A file holding a user's NKey seed alone, for servers that list users by public
    NKey (``authorization { users: [{ nkey: U... }] }``)."""
    tls: ssl.SSLContext | None = None
    tls_hostname: str | None = None
    connect_timeout: float = 2.0
    reconnect_time_wait: float = 2.0
    max_reconnect_attempts: int = -1
    skip_subject_validation: bool = False
    """Set where the transport checks subjects itself (once per subject, not per message)."""

    def with_credentials_of(self, servers: ServerList) -> NatsOptions:
        """These options, with the credentials found in the URL where none were given.

        Credentials given as options win over the URL's: they are the explicit ones.
        """
        if self.user is not None or self.password is not None or self.token is not None:
            options = self
        else:
            options = replace(
                self, user=servers.user, password=servers.password, token=servers.token
            )
        options.validate()
        return options

    def validate(self) -> None:
        if self.token is not None and (self.user is not None or self.password is not None):
            raise ConfigurationError("pass either a token or a user and password, not both")
        keys = [name for name in ("creds_file", "nkeys_seed") if getattr(self, name) is not None]
        if len(keys) == 2:
            raise ConfigurationError("pass either creds_file or nkeys_seed, not both")
        if keys and (self.user is not None or self.password is not None or self.token is not None):
            raise ConfigurationError(
                f"pass either {keys[0]} or a user, password or token (in the URL or as "
                "options), not both"
            )
        for name in keys:
            if looks_like_secret(getattr(self, name)):
                # Never echoed: it is the secret itself, given where a path belongs.
                raise ConfigurationError(
                    f"{name} is the path of a file; the value given looks like the "
                    "credential itself: write it to a file readable only by the service "
                    "and pass that file's path"
                )
        if self.connect_timeout <= 0:
            raise ConfigurationError("connect_timeout must be positive")
        if self.reconnect_time_wait < 0:
            raise ConfigurationError("reconnect_time_wait must not be negative")
