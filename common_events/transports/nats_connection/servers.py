"""Server lists of broker URLs, with the credentials taken out of them.

``stan://user:pass@a:4222,b:4223?cluster_id=x`` and ``nats://a:4222,nats://b:4223`` both
become a ``ServerList``: server URLs for nats-py that carry no secret, the user,
password or token that were in them, and the query options. Nothing downstream ever
holds a URL with a secret in it, so nothing downstream can log one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from common_events.errors import ConfigurationError

DEFAULT_PORT = 4222
REDACTED = "***"


@dataclass(frozen=True, slots=True)
class ServerList:
    """The servers of one broker URL; secrets are kept out of ``repr``."""

    servers: tuple[str, ...]
    """``nats://host:port`` or ``tls://host:port``, without credentials."""
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    query: Mapping[str, str] = field(default_factory=dict)

    @property
    def display(self) -> str:
        """The servers for messages: ``nats://a:4222, nats://b:4223``."""
        return ", ".join(self.servers)


def parse_servers(url: str, *, schemes: Mapping[str, str]) -> ServerList:
    """Split ``url`` into servers, credentials and query options.

    ``schemes`` maps each URL scheme accepted here to the scheme nats-py is given
    (``{"stan": "nats"}``, ``{"nats": "nats", "tls": "tls"}``). Entries after the first
    may repeat a scheme or leave it out; a port defaults to 4222. Credentials may sit on
    any entry (``user:pass@`` or a lone ``token@``); entries that disagree are refused.
    """
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in schemes:
        known = " or ".join(f"{name}://" for name in schemes)
        raise ConfigurationError(f"a broker URL here starts with {known}, not {redact_url(url)!r}")
    rest, _, query = rest.partition("?")
    servers: list[str] = []
    credentials: set[tuple[str, str | None]] = set()
    for raw_entry in rest.split(","):
        entry = raw_entry.strip().rstrip("/")
        if not entry:
            continue
        entry_scheme = scheme
        if "://" in entry:
            entry_scheme, _, entry = entry.partition("://")
            entry_scheme = entry_scheme.lower()
            if entry_scheme not in schemes:
                raise ConfigurationError(
                    f"bad server scheme {entry_scheme!r} in {redact_url(url)!r}"
                )
        userinfo, at, host = entry.rpartition("@")
        if at:
            name, colon, secret = userinfo.partition(":")
            credentials.add((unquote(name), unquote(secret) if colon else None))
        if not host:
            raise ConfigurationError(f"empty host in {redact_url(url)!r}")
        servers.append(f"{schemes[entry_scheme]}://{_with_port(host, url)}")
    if not servers:
        raise ConfigurationError(f"no host in {redact_url(url)!r}")
    if len(credentials) > 1:
        raise ConfigurationError(
            f"the servers of {redact_url(url)!r} carry different credentials; give them once"
        )
    user: str | None = None
    password: str | None = None
    token: str | None = None
    if credentials:
        ((found_user, found_password),) = credentials
        if found_password is None:
            token = found_user  # nats-py's convention: a lone user part is a token
        else:
            user, password = found_user, found_password
    options = {key: unquote(values[-1]) for key, values in parse_qs(query).items()}
    return ServerList(tuple(servers), user=user, password=password, token=token, query=options)


def _with_port(host: str, url: str) -> str:
    has_port = "]:" in host if host.startswith("[") else ":" in host
    if not has_port:
        return f"{host}:{DEFAULT_PORT}"
    name, _, port = host.rpartition(":")
    if not name:
        raise ConfigurationError(f"empty host in {redact_url(url)!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"bad port {port!r} in {redact_url(url)!r}")
    return host


def redact_url(url: str) -> str:
    """``url`` with every ``user:pass@`` or ``token@`` replaced by ``***@``.

    Works on lists (``nats://u:p@a:4222,u:p@b:4223``) and on text that is not a valid
    URL, so it is safe to call on whatever a user passed in.
    """
    head, separator, rest = url.partition("://")
    if not separator:
        head, rest = "", url
    rest, question, query = rest.partition("?")
    entries = []
    for entry in rest.split(","):
        prefix = ""
        if "://" in entry:
            entry_scheme, _, entry = entry.partition("://")
            prefix = f"{entry_scheme}://"
        _, at, host = entry.rpartition("@")
        entries.append(f"{prefix}{REDACTED}@{host}" if at else f"{prefix}{entry}")
    redacted = ",".join(entries)
    return f"{head}{separator}{redacted}{question}{query}"
