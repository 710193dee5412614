"""Every exception the package raises on purpose.

Imported by the transports and the core; imports nothing of the package itself.
"""

from __future__ import annotations

from typing import Any


class CommonEventsError(Exception):
    """Base of every error raised by common_events."""


class ConfigurationError(CommonEventsError, ValueError):
    """A URL, option or class definition that cannot work."""


class ListenerDefinitionError(ConfigurationError, TypeError):
    """A ``Listener`` or ``Publisher`` subclass that is defined wrongly."""


class TransportError(CommonEventsError):
    """Something went wrong talking to the broker."""


class ConnectError(TransportError):
    """The broker could not be reached or refused the connection (and says why)."""


class AuthenticationError(ConnectError):
    """The broker refused the credentials."""


class StreamConflict(ConnectError):
    """The JetStream stream exists but its subjects or settings differ from what is needed.

    Nothing was changed on the server; the message says what differs.
    """


class PublishError(TransportError):
    """The broker did not confirm a publish."""


class PublishTimeout(PublishError, TimeoutError):
    """No confirmation came within the publish timeout."""


class BatchPublishError(PublishError):
    """Some publishes of ``Publisher.publish_many`` failed.

    ``acks`` holds the confirmation of each event in order, ``None`` where there is
    none; ``errors`` the failures. The first failure is the ``__cause__``.
    """

    def __init__(self, message: str, acks: list[Any], errors: list[BaseException]) -> None:
        super().__init__(message)
        self.acks = acks
        self.errors = errors


class PermissionDenied(PublishError):
    """The broker refused the publish or subscription for lack of permission."""


class SubscribeError(TransportError):
    """The broker refused a subscription."""


class ConnectionLost(TransportError):
    """The broker forgot this client or the connection is gone for good."""


class TransportClosed(TransportError):
    """The transport was used after ``close()``."""


class OutOfOrder(CommonEventsError):
    """Raised by a handler that cannot apply an event yet.

    The usual case is optimistic concurrency: version N arrived before version N-1 was
    applied. The message is not acknowledged and comes back later; it is logged at info
    level, not as an error. Past ``max_deliveries`` it goes to the dead-letter subject.
    """
