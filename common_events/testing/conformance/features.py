"""What a backend can do, and the skip of a conformance test that needs what it lacks.

The idea of Watermill's ``tests.Features``: the suite is one, the backends differ in a
few documented ways (DESIGN.md's delivery table), and a test of something a backend does
not have is skipped with the reason, never passed without running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import pytest

__all__ = ["FeatureGate", "Features", "requires"]

logger = logging.getLogger(__name__)

_LACKS = "lacks"
_REQUIRES_ATTRIBUTE = "__conformance_requires__"

Test = TypeVar("Test", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Features:
    """The optional parts of the transport contract a backend has.

    The defaults describe the least a transport must offer besides what every one of them
    does (publish with a confirmation, subscribe, manual ack, redelivery after
    ``ack_wait``, durable and queue subscriptions, ``max_in_flight``, ``publish_many``).
    """

    negative_ack: bool = field(
        default=False,
        metadata={_LACKS: "no negative ack: nak() leaves the message to come back after ack_wait"},
    )
    """``nak(delay)`` hands a message back before ``ack_wait`` runs out (memory:
    redeliver now; JetStream: ``nak(delay)``). NATS Streaming has none."""

    in_progress: bool = field(
        default=False,
        metadata={_LACKS: "no in-progress ack: a long handler cannot push ack_wait back"},
    )
    """A delivered message has ``async in_progress()``, which restarts its ``ack_wait``
    while the handler is still working (JetStream's in-progress ack)."""

    headers: bool = field(
        default=False,
        metadata={_LACKS: "no headers: only the payload travels"},
    )
    """Headers given to ``publish()`` arrive in ``message.headers`` (memory, JetStream).
    Without them the payload still travels and ``headers`` is empty (NATS Streaming)."""

    durable_across_reconnect: bool = field(
        default=True,
        metadata={_LACKS: "durables do not outlive the connection that made them"},
    )
    """A durable subscription closed on one connection resumes where it left off on a
    new connection to the same broker (a service restart)."""

    redelivery_count: bool = field(
        default=True,
        metadata={_LACKS: "no delivery count: redeliveries are not numbered"},
    )
    """``delivery_count`` numbers the deliveries of one message (1, 2, 3...), which the
    core's ``max_deliveries`` relies on."""

    queue_groups: bool = field(
        default=True,
        metadata={_LACKS: "no queue groups: every subscriber gets every message"},
    )
    """Members of one queue group split the messages, each message to one of them."""

    immediate_publish: bool = field(
        default=False,
        metadata={_LACKS: "no publish_now(): a Publisher runs a coroutine per publish"},
    )
    """The transport has ``publish_now()`` (``transports.base.ImmediatePublisher``): the
    message goes out when it is called, and its ``PublishConfirmation`` resolves to the
    ``PublishAck`` that ``publish`` would return (memory, NATS Streaming)."""

    def lacks(self, name: str) -> str:
        """Why a test that needs feature ``name`` does not run on this backend."""
        for feature in fields(self):
            if feature.name == name:
                return f"the transport has {feature.metadata[_LACKS]} (Features.{name}=False)"
        raise AttributeError(f"Features has no feature {name!r}")


_NAMES = frozenset(feature.name for feature in fields(Features))


def requires(*names: str) -> Callable[[Test], Test]:
    """Mark a conformance test as needing these features; ``FeatureGate`` skips it."""
    unknown = set(names) - _NAMES
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}; known: {sorted(_NAMES)}")

    def mark(test: Test) -> Test:
        setattr(test, _REQUIRES_ATTRIBUTE, names)
        return test

    return mark


class FeatureGate:
    """Base of the suite's classes: holds ``features`` and skips what they rule out.

    The skip happens in an autouse fixture, before the test's other fixtures, so a
    skipped test does not start a broker.
    """

    features: ClassVar[Features]
    """Set on the subclass: ``features = Features(negative_ack=True, ...)``."""

    @pytest.fixture(autouse=True)
    def _skip_what_the_transport_lacks(self, request: pytest.FixtureRequest) -> None:
        features = getattr(type(self), "features", None)
        if not isinstance(features, Features):
            pytest.fail(
                f"{type(self).__name__} must say what its transport can do: "
                "features = Features(negative_ack=..., headers=..., ...)",
                pytrace=False,
            )
        for name in getattr(request.function, _REQUIRES_ATTRIBUTE, ()):
            if not getattr(features, name):
                pytest.skip(features.lacks(name))
