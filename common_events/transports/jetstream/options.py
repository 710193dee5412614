"""Connection options of the JetStream transport and the server list of a URL."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common_events.errors import ConfigurationError

_SCHEMES = ("nats", "tls")


@dataclass(frozen=True, slots=True)
class JetStreamOptions:
    """Everything ``connect(url, **options)`` accepts besides the URL.

    Credentials and TLS go to nats-py unchanged; a user and password may also be in the
    URL (``nats://user:pass@host:4222``). Times are in seconds.
    """

    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | Path | None = None
    tls: ssl.SSLContext | None = None
    tls_hostname: str | None = None
    name: str | None = None
    """Connection name shown by the server's monitoring (``connz``)."""

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
    """Timeout of JetStream API requests (stream and consumer management)."""

    connect_timeout: float = 5.0
    reconnect_time_wait: float = 0.5
    max_reconnect_attempts: int = 120
    """Per server, after the connection was made; ``-1`` retries forever."""

    deliver_prefix: str = "_INBOX.common-events"
    """Subject prefix where push consumers deliver; a client needs subscribe permission
    on it (``_INBOX.>`` covers the default)."""
    ephemeral_inactive_threshold: float = 30.0
    """How long the server keeps a non-durable queue group's consumer without members."""
    close_timeout: float = 10.0
    """How long closing a subscription waits for the running handler to finish."""

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> JetStreamOptions:
        known = {field.name for field in fields(cls)}
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
        if self.token is not None and (self.user is not None or self.password is not None):
            raise ConfigurationError("pass either token or user/password, not both")


def parse_servers(url: str) -> list[str]:
    """``nats://a:4222,b:4223`` -> ``["nats://a:4222", "nats://b:4223"]``.

    Entries without a scheme take the first entry's; credentials stay on their entry.
    """
    entries = [entry.strip() for entry in url.split(",") if entry.strip()]
    if not entries:
        raise ConfigurationError("empty JetStream URL")
    first_scheme = urlsplit(entries[0]).scheme.lower()
    if first_scheme not in _SCHEMES:
        raise ConfigurationError(f"a JetStream URL starts with nats:// or tls://, not {url!r}")
    servers: list[str] = []
    for entry in entries:
        if "://" not in entry:
            entry = f"{first_scheme}://{entry}"
        parts = urlsplit(entry)
        if parts.scheme.lower() not in _SCHEMES:
            raise ConfigurationError(f"bad server {entry!r} in {url!r}")
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError(f"bad port in {entry!r}") from None
        if not parts.hostname:
            raise ConfigurationError(f"no host in {entry!r}")
        if port is None:
            entry = entry.rstrip("/") + ":4222"
        servers.append(entry)
    return servers


def redact(server: str) -> str:
    """The server URL without credentials, for messages and logs."""
    parts = urlsplit(server)
    if parts.username is None and parts.password is None:
        return server
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://***@{host}{port}"
