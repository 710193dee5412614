"""Every nats-py error, mapped to ours in one table.

The NATS transports never catch nats-py's exceptions themselves: they run calls inside
``map_nats_errors()`` or ask ``classify_nats_error()`` what a failure means. The table
says, per nats-py exception, which of our errors it becomes for each kind of call and
whether another attempt on the same connection may succeed (a reconnect in progress, a
leader election), which is what a retrying publish needs to know.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import nats.errors
import nats.js.errors

from common_events.errors import (
    AuthenticationError,
    CommonEventsError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    PublishError,
    PublishTimeout,
    SubscribeError,
    TransportClosed,
    TransportError,
)


class Operation(StrEnum):
    """What the failed call was doing; the same nats-py error means different things."""

    CONNECT = "connect"
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    REQUEST = "request"
    ACK = "ack"
    CLOSE = "close"


class JetStreamApiError(TransportError):
    """The JetStream API refused a request; ``err_code`` is nats-server's error code."""

    def __init__(
        self, message: str, *, status: int | None, err_code: int | None, description: str
    ) -> None:
        super().__init__(message)
        self.status = status
        self.err_code = err_code
        self.description = description

    @property
    def not_found(self) -> bool:
        return self.status == 404


@dataclass(frozen=True, slots=True)
class NatsFailure:
    """What a nats-py error means for the call that got it."""

    error: CommonEventsError
    """Ours, ready to raise."""
    transient: bool
    """Another attempt on the same connection may succeed."""
    reason: str
    """A short phrase for messages ("no reply", "the connection is re-establishing")."""


_Make = Callable[[str, Operation], CommonEventsError]


def _by_operation(default: type[CommonEventsError]) -> _Make:
    kinds: dict[Operation, type[CommonEventsError]] = {
        Operation.CONNECT: ConnectError,
        Operation.PUBLISH: PublishError,
        Operation.SUBSCRIBE: SubscribeError,
    }

    def make(text: str, operation: Operation) -> CommonEventsError:
        return kinds.get(operation, default)(text)

    return make


def _timeout(text: str, operation: Operation) -> CommonEventsError:
    if operation is Operation.PUBLISH:
        return PublishTimeout(text)
    if operation is Operation.CONNECT:
        return ConnectError(text)
    return TransportError(text)


def _fixed(kind: type[CommonEventsError]) -> _Make:
    return lambda text, _operation: kind(text)


# (nats-py exception, ours, transient, reason); the first row whose exception matches
# wins, so subclasses come before their bases.
_TABLE: tuple[tuple[type[BaseException], _Make, bool, str], ...] = (
    (nats.errors.AuthorizationError, _fixed(AuthenticationError), False,
     "the server refused the credentials"),
    (nats.errors.InvalidUserCredentialsError, _fixed(AuthenticationError), False,
     "the credentials file is not valid"),
    (nats.errors.NoServersError, _fixed(ConnectError), False, "no server could be reached"),
    (nats.errors.SecureConnRequiredError, _fixed(ConnectError), False,
     "the server requires TLS (use tls:// or pass tls=...)"),
    (nats.errors.SecureConnWantedError, _fixed(ConnectError), False,
     "the server does not offer TLS"),
    (nats.errors.SecureConnFailedError, _fixed(ConnectError), False, "TLS handshake failed"),
    (ssl.SSLError, _fixed(ConnectError), False, "TLS handshake failed"),
    (nats.errors.ConnectionClosedError, _fixed(ConnectionLost), False,
     "the connection is closed"),
    (nats.errors.ConnectionDrainingError, _fixed(ConnectionLost), False,
     "the connection is closing"),
    (nats.errors.ConnectionReconnectingError, _by_operation(TransportError), True,
     "the connection is re-establishing"),
    (nats.errors.OutboundBufferLimitError, _by_operation(TransportError), True,
     "the connection is re-establishing and its buffer is full"),
    (nats.errors.StaleConnectionError, _by_operation(TransportError), True,
     "the connection went stale"),
    (nats.errors.MaxPayloadError, _by_operation(TransportError), False,
     "the message is larger than the server's maximum payload"),
    (nats.errors.BadSubjectError, _fixed(ConfigurationError), False, "invalid subject"),
    (nats.errors.BadSubscriptionError, _fixed(SubscribeError), False, "invalid subscription"),
    (nats.errors.SlowConsumerError, _by_operation(TransportError), False,
     "the client could not keep up (slow consumer)"),
    (nats.errors.NoRespondersError, _by_operation(TransportError), True, "no responder"),
    (nats.js.errors.NoStreamResponseError, _by_operation(TransportError), True,
     "no stream answered"),
    (nats.errors.TimeoutError, _timeout, True, "no reply in time"),
    (TimeoutError, _timeout, True, "no reply in time"),
    (nats.errors.Error, _by_operation(TransportError), False, "NATS error"),
    (ConnectionRefusedError, _fixed(ConnectError), False, "connection refused"),
    (OSError, _by_operation(ConnectionLost), False, "network error"),
)


def classify_nats_error(
    error: BaseException, operation: Operation, what: str, *, closing: bool = False
) -> NatsFailure | None:
    """What ``error`` means for ``what`` (``"publish to 'ticket:created'"``); ``None`` when
    it is not a NATS or network error (a bug: let it propagate).

    ``closing``: our own side is closing, so a closed connection is ``TransportClosed``,
    not a loss.
    """
    if isinstance(error, CommonEventsError):
        return NatsFailure(error, transient=False, reason=str(error))
    if isinstance(error, nats.js.errors.APIError) and not isinstance(
        error, nats.js.errors.NoStreamResponseError
    ):
        return _api_failure(error, what)
    for kind, make, transient, reason in _TABLE:
        if isinstance(error, kind):
            detail = _detail(error)
            text = f"{what}: {reason}" + (f" ({detail})" if detail and detail != reason else "")
            if closing and kind in (
                nats.errors.ConnectionClosedError,
                nats.errors.ConnectionDrainingError,
            ):
                return NatsFailure(TransportClosed(f"{what}: the transport is closed"), False,
                                   "the transport is closed")
            return NatsFailure(make(text, operation), transient, reason)
    return None


def _api_failure(error: nats.js.errors.APIError, what: str) -> NatsFailure:
    status = error.code
    if status is None and isinstance(error, nats.js.errors.ServiceUnavailableError):
        # nats-py raises it without a code when nothing answered an API request (no
        # JetStream on the server or account) or for a bare 503 status message.
        status = 503
        description = error.description or "no JetStream answered"
    else:
        description = error.description or str(error) or type(error).__name__
    # 503: JetStream is not (yet) available: no meta leader, not enabled, restarting.
    transient = status == 503
    return NatsFailure(
        JetStreamApiError(
            f"{what}: JetStream refused: {description}",
            status=status,
            err_code=error.err_code,
            description=description,
        ),
        transient,
        f"JetStream unavailable ({description})" if transient else description,
    )


def _detail(error: BaseException) -> str:
    text = str(error).removeprefix("nats: ").strip()
    return text


def translate_nats_error(
    error: BaseException, operation: Operation, what: str, *, closing: bool = False
) -> BaseException:
    """Ours for ``error``; ``error`` itself when the table does not know it."""
    failure = classify_nats_error(error, operation, what, closing=closing)
    return failure.error if failure is not None else error


@contextmanager
def map_nats_errors(
    operation: Operation, what: str, *, closing: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Raise ours instead of any nats-py or network error raised inside the block."""
    try:
        yield
    except Exception as error:
        failure = classify_nats_error(error, operation, what, closing=closing())
        if failure is None or failure.error is error:
            raise
        raise failure.error from error


_AUTH_MARKERS = (
    "authorization violation",
    "authentication timeout",
    "authentication expired",
    "user authentication revoked",
)
_PERMISSION_VIOLATION = re.compile(
    r'permissions violation for (publish|subscription) to "([^"]*)"', re.IGNORECASE
)


def is_auth_failure(error: BaseException) -> bool:
    """Whether the server refused the credentials (retrying cannot help)."""
    if isinstance(error, nats.errors.AuthorizationError | AuthenticationError):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _AUTH_MARKERS)


def is_tls_failure(error: BaseException) -> bool:
    return isinstance(
        error,
        ssl.SSLError | nats.errors.SecureConnFailedError | nats.errors.SecureConnWantedError,
    )


def permission_violation(error: BaseException) -> tuple[str, str] | None:
    """``("publish" | "subscription", subject)`` if ``error`` is the server's
    asynchronous report of a permission violation, else ``None``."""
    match = _PERMISSION_VIOLATION.search(str(error))
    if match is None:
        return None
    return match.group(1).lower(), match.group(2)
