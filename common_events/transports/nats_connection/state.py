"""The state of a NATS connection, as objects rather than a row of booleans."""

from __future__ import annotations

from dataclasses import dataclass

from common_events.errors import ConnectionLost


@dataclass(frozen=True, slots=True)
class Connecting:
    """The first connection is being made."""

    usable = False


@dataclass(frozen=True, slots=True)
class Connected:
    """Up; calls go through."""

    usable = True


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The socket dropped; nats-py is reconnecting and buffers what is sent meanwhile."""

    usable = True


@dataclass(frozen=True, slots=True)
class Closed:
    """Closed by its owner; never used again."""

    usable = False


@dataclass(frozen=True, slots=True)
class Lost:
    """Gone for good without being closed: no server could be reached again."""

    error: ConnectionLost
    usable = False


ConnectionState = Connecting | Connected | Reconnecting | Closed | Lost
