"""The refusals every broker must give alike: a user whose JWT expired, one revoked
before it connected, one of another operator, and no credentials at all. Each fails
with one line that says what to check; the tests then read back that nothing of theirs
was stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import common_events
from tests.auth.nsc import Operator
from tests.auth.support import SecretWatch, refused


@dataclass(frozen=True)
class Users:
    """Users made before the server starts (it reads the operator's resolver then)."""

    good: Path
    """A user of ``operator`` the server accepts."""
    expired: Path
    """User ``old``, whose JWT expired on 2020-01-01."""
    revoked: Path
    """User ``gone``, revoked."""
    stranger: Path
    """A user of ``foreign_operator``, whose account the server does not know."""

    @classmethod
    def of(cls, operator: Operator, foreign_operator: Operator) -> Users:
        good = operator.user("orders")
        expired = operator.user("old", expiry="2020-01-01")
        revoked = operator.user("gone")
        operator.revoke("gone")
        return cls(good, expired, revoked, foreign_operator.user("orders"))


def with_creds(url: str, creds: Path) -> Callable[[], Awaitable[common_events.Bus]]:
    """Connecting to ``url`` with the credentials file ``creds``."""
    return lambda: common_events.connect(url, creds_file=creds)


async def check_refusals(watch: SecretWatch, url: str, users: Users) -> None:
    """The expired, the revoked and the stranger are refused, and so is a connection
    with no credentials; each with the one line ``refused`` asks for."""
    expired, revoked, stranger = users.expired, users.revoked, users.stranger
    await refused(watch, with_creds(url, expired), "refused the credentials",
                  f"check the credentials file {expired}",
                  "JWT of user 'old' expired at 2020-01-01T00:00:00Z")  # fmt: skip
    await refused(watch, with_creds(url, revoked), f"check the credentials file {revoked}",
                  "user 'gone' may have been revoked")  # fmt: skip
    await refused(watch, with_creds(url, stranger), f"check the credentials file {stranger}",
                  "its account is unknown to the server")  # fmt: skip
    await refused(watch, lambda: common_events.connect(url),
                  "the server wants credentials", "creds_file or nkeys_seed")  # fmt: skip
