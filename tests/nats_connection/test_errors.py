"""The one table from nats-py errors to ours."""

from __future__ import annotations

import ssl

import nats.errors
import nats.js.errors
import pytest

from common_events.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    PublishError,
    PublishTimeout,
    SubscribeError,
    TransportClosed,
    TransportError,
)
from common_events.transports.nats_connection import (
    JetStreamApiError,
    Operation,
    classify_nats_error,
    map_nats_errors,
    permission_violation,
)


@pytest.mark.parametrize(
    ("error", "operation", "ours", "transient"),
    [
        (nats.errors.AuthorizationError(), Operation.CONNECT, AuthenticationError, False),
        (nats.errors.NoServersError(), Operation.CONNECT, ConnectError, False),
        (ssl.SSLError("bad cert"), Operation.CONNECT, ConnectError, False),
        (nats.errors.ConnectionClosedError(), Operation.PUBLISH, ConnectionLost, False),
        (nats.errors.ConnectionReconnectingError(), Operation.PUBLISH, PublishError, True),
        (nats.errors.OutboundBufferLimitError(), Operation.PUBLISH, PublishError, True),
        (nats.errors.MaxPayloadError(), Operation.PUBLISH, PublishError, False),
        (nats.errors.TimeoutError(), Operation.PUBLISH, PublishTimeout, True),
        (TimeoutError(), Operation.REQUEST, TransportError, True),
        (nats.errors.TimeoutError(), Operation.CONNECT, ConnectError, True),
        (nats.errors.BadSubjectError(), Operation.PUBLISH, ConfigurationError, False),
        (nats.errors.BadSubscriptionError(), Operation.SUBSCRIBE, SubscribeError, False),
        (nats.js.errors.NoStreamResponseError(), Operation.PUBLISH, PublishError, True),
        (nats.errors.Error("odd"), Operation.SUBSCRIBE, SubscribeError, False),
    ],
)
def test_each_nats_error_becomes_one_of_ours(
    error: BaseException, operation: Operation, ours: type[Exception], transient: bool
) -> None:
    failure = classify_nats_error(error, operation, "doing it")

    assert failure is not None
    assert type(failure.error) is ours
    assert failure.transient is transient
    assert str(failure.error).startswith("doing it: ")


def test_a_closed_connection_while_closing_is_transport_closed() -> None:
    failure = classify_nats_error(
        nats.errors.ConnectionClosedError(), Operation.PUBLISH, "publish", closing=True
    )

    assert failure is not None and isinstance(failure.error, TransportClosed)


def test_jetstream_api_refusals_keep_their_code() -> None:
    refusal = nats.js.errors.APIError(code=400, err_code=10058, description="stream name in use")
    failure = classify_nats_error(refusal, Operation.REQUEST, "creating stream EVENTS")

    assert failure is not None and isinstance(failure.error, JetStreamApiError)
    assert failure.error.err_code == 10058
    assert not failure.error.not_found and not failure.transient

    unavailable = nats.js.errors.ServiceUnavailableError(code=503, description="no leader")
    failure = classify_nats_error(unavailable, Operation.REQUEST, "reading stream")
    assert failure is not None and failure.transient


def test_errors_outside_the_table_propagate_unchanged() -> None:
    assert classify_nats_error(KeyError("x"), Operation.PUBLISH, "publish") is None
    with pytest.raises(KeyError), map_nats_errors(Operation.PUBLISH, "publish"):
        raise KeyError("x")


def test_map_nats_errors_raises_ours_with_the_cause_kept() -> None:
    with pytest.raises(ConnectionLost) as caught, map_nats_errors(Operation.ACK, "ack"):
        raise nats.errors.ConnectionClosedError()

    assert isinstance(caught.value.__cause__, nats.errors.ConnectionClosedError)


def test_permission_violations_are_recognised() -> None:
    text = 'nats: permissions violation for publish to "ticket:created"'

    assert permission_violation(nats.errors.Error(text)) == ("publish", "ticket:created")
    assert permission_violation(nats.errors.Error("nats: slow consumer")) is None
