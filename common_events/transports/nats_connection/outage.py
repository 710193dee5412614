"""What a NATS connection says while it is down: one line per change, not one a second.

An outage logs when it begins (with the reason the socket dropped), at failed attempts
1, 2, 4, 8... and whenever the reason changes (the others at DEBUG), and once when the
connection is back, with how long it took.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


class OutageLog:
    """The log lines of one connection's outages."""

    def __init__(
        self, name: str, servers: int, max_reconnect_attempts: int, reconnect_time_wait: float
    ) -> None:
        self.name = name
        self.servers = servers
        self.max_reconnect_attempts = max_reconnect_attempts
        self.reconnect_time_wait = reconnect_time_wait
        self._drop_reason: str | None = None
        self._started = 0.0
        self._failed_attempts = 0
        self._last_error = ""

    @property
    def attempts_per_server(self) -> int | None:
        """How many reconnects nats-py tries per server before it gives up; ``None``:
        it never does (it tries while ``reconnects <= max_reconnect_attempts``)."""
        limit = self.max_reconnect_attempts
        return limit + 1 if limit > 0 else None

    def dropped_because(self, reason: str) -> None:
        """The reason the socket is about to drop; said by the next ``began()``."""
        self._drop_reason = reason

    def began(self) -> None:
        self._started = time.monotonic()
        self._failed_attempts = 0
        self._last_error = ""
        reason, self._drop_reason = self._drop_reason, None
        attempts = self.attempts_per_server
        logger.warning(
            "%s lost its NATS connection (disconnected%s); reconnecting every %gs%s",
            self.name,
            f": {reason}" if reason else "",
            self.reconnect_time_wait,
            f", at most {attempts} attempts per server" if attempts else "",
        )

    def attempt_failed(self, reason: str) -> None:
        self._failed_attempts += 1
        attempts = self._failed_attempts
        changed = reason != self._last_error
        self._last_error = reason
        level = logging.WARNING if changed or attempts & (attempts - 1) == 0 else logging.DEBUG
        per_server = self.attempts_per_server
        of = f" of {per_server * self.servers}" if per_server else ""
        logger.log(
            level,
            "%s: still reconnecting to NATS after %.1fs, attempt %d%s failed: %s",
            self.name,
            time.monotonic() - self._started,
            attempts,
            of,
            reason,
        )

    def ended(self) -> str:
        """The words the reconnect line adds: how long it took, how many attempts."""
        return (
            f" after {time.monotonic() - self._started:.1f}s "
            f"({self._failed_attempts} failed attempt(s))"
        )
