"""``OutboxRelay``: publishes the outbox's committed events through the bus.

Each row is published with ``Nats-Msg-Id`` set to its ``message_id`` and marked sent only
after the broker confirmed it. A relay killed between the two publishes the row again
after its restart: JetStream stores such a repeat once (its duplicate window), and an
idempotent listener recognises it by the same id where the duplicate window has passed.
While the broker (or the database) is unavailable the relay retries with back-off, and
says so once per change of state, not once per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from common_events import Bus, RunningService
from common_events.outbox.backoff import Backoff
from common_events.outbox.claim import BatchResult, ClaimKind, PendingEvent, choose_claim
from common_events.outbox.tables import OutboxRecord
from common_events.outbox.writer import Outbox

logger = logging.getLogger(__name__)

MESSAGE_ID_HEADER = "Nats-Msg-Id"


class RelayState(enum.Enum):
    """What the relay is doing; health checks read ``OutboxRelay.state``."""

    STARTING = "starting"
    PUBLISHING = "publishing"
    STANDBY = "standby"
    """Another relay holds the lease (SQLite); this one takes over if that one stops."""
    BROKER_UNAVAILABLE = "broker unavailable"
    DATABASE_UNAVAILABLE = "database unavailable"
    FAILING = "failing"
    """An unexpected error; retried with back-off like the others."""
    STOPPED = "stopped"


class _PassFailed(Exception):
    def __init__(self, state: RelayState, error: BaseException) -> None:
        super().__init__(str(error))
        self.state = state
        self.error = error


class OutboxRelay:
    """Publishes committed outbox rows in order, through ``bus``, from ``engine``'s
    database.

    Life cycle: ``await relay.start()`` runs it in a task and ``await relay.close()``
    stops it (``run_service`` does both when given the relay); or ``await
    relay.run(stop)`` runs it until ``stop`` is set. ``await relay.publish_pending()``
    runs one batch, for scripts and tests.

    Several relays may run on one database (the replicas of a service): on PostgreSQL
    they share the rows through row locks; elsewhere one holds a lease and the others
    stand by (``claim`` forces either).
    """

    def __init__(
        self,
        bus: Bus,
        engine: AsyncEngine,
        *,
        outbox: Outbox | None = None,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        retention: timedelta | None = timedelta(days=7),
        purge_interval: float = 300.0,
        backoff: Backoff | None = None,
        claim: ClaimKind = "auto",
        lease_name: str = "default",
        lease_ttl: float = 15.0,
        drain_timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0 seconds")
        if retention is not None and retention < timedelta(0):
            raise ValueError("retention must be >= 0 (or None to keep sent rows)")
        self.bus = bus
        self.engine = engine
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self.purge_interval = purge_interval
        self.backoff = backoff if backoff is not None else Backoff()
        self.drain_timeout = drain_timeout
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._claim = choose_claim(
            claim, engine, lease_name=lease_name, lease_ttl=lease_ttl, holder=self.name
        )
        self.published = 0
        """Events this relay published and marked sent."""
        self.duplicates = 0
        """Publishes the broker confirmed as repeats it had stored already (JetStream)."""
        self._state = RelayState.STARTING
        self._failures = 0
        self._failing_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_purge = 0.0
        if outbox is not None:
            outbox.attach(self)

    # -- state -----------------------------------------------------------------------

    @property
    def claim(self) -> str:
        """``"row-lock"`` or ``"lease"``: how this relay shares the work."""
        return self._claim.kind

    @property
    def state(self) -> RelayState:
        return self._state

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _enter(self, state: RelayState, error: BaseException | None = None) -> None:
        previous, self._state = self._state, state
        if state is previous:
            return
        if state in (RelayState.PUBLISHING, RelayState.STANDBY):
            if self._failing_since is not None:
                logger.info(
                    "outbox relay %s is %s again after %d failed attempt(s) over %.1fs",
                    self.name,
                    state.value,
                    self._failures,
                    time.monotonic() - self._failing_since,
                )
            elif state is RelayState.STANDBY:
                logger.info("outbox relay %s stands by: another relay holds the lease", self.name)
            self._failures = 0
            self._failing_since = None
        elif state is RelayState.STOPPED:
            logger.info("outbox relay %s stopped (%d published)", self.name, self.published)
        elif state is RelayState.FAILING:
            logger.error(
                "outbox relay %s: unexpected error; retrying with back-off up to %.1fs",
                self.name,
                self.backoff.maximum,
                exc_info=error,
            )
        else:
            logger.warning(
                "outbox relay %s: %s (%s); retrying with back-off up to %.1fs",
                self.name,
                state.value,
                _describe(error),
                self.backoff.maximum,
            )

    # -- life cycle ------------------------------------------------------------------

    async def start(self, service: RunningService | None = None) -> None:
        """Run the relay in a task until ``close()``.

        A relay is a ``run_service`` companion (``companions=[relay]``): the service
        starts it before its listeners subscribe and closes it after they drained,
        before the connection closes. ``service`` is not needed here."""
        if self.running:
            return
        self._stop.clear()
        self._task = asyncio.create_task(self.run(self._stop), name=f"outbox-relay {self.name}")

    async def close(self) -> None:
        """Stop: let the batch in progress finish (up to ``drain_timeout`` seconds),
        then give up the lease. Rows of an abandoned batch are published again later."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        self._wake.set()
        done, _ = await asyncio.wait({task}, timeout=self.drain_timeout)
        if not done:
            logger.warning(
                "outbox relay %s: batch still running after %.1fs; abandoning it",
                self.name,
                self.drain_timeout,
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif task.exception() is not None:
            logger.error("outbox relay %s ended with %r", self.name, task.exception())

    def wake(self) -> None:
        """Look for new rows now instead of at the next poll (thread-safe)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until ``stop`` is set (forever without one)."""
        stop = stop if stop is not None else asyncio.Event()
        self._loop = asyncio.get_running_loop()
        logger.info(
            "outbox relay %s started on %s (%s)",
            self.name,
            self.engine.url.render_as_string(hide_password=True),
            self.claim,
        )
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    result = await self._pass()
                except _PassFailed as failure:
                    self._failures += 1
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                    self._enter(failure.state, failure.error)
                    await _wait_for(stop, self.backoff.delay(self._failures))
                    continue
                self._enter(RelayState.STANDBY if result.standby else RelayState.PUBLISHING)
                await self._purge_when_due()
                if result.claimed >= self.batch_size and not result.standby:
                    continue  # more are waiting
                await _wait_for_either(stop, self._wake, self.poll_interval)
        finally:
            with contextlib.suppress(Exception):
                await self._claim.release()
            self._enter(RelayState.STOPPED)

    # -- one pass --------------------------------------------------------------------

    async def publish_pending(self) -> int:
        """Publish one batch now; return how many events were published. Raises what
        kept the broker or the database from taking them."""
        result = await self._claim.publish_batch(self.batch_size, self._publish_rows)
        if result.error is not None:
            raise result.error
        return result.published

    async def _pass(self) -> BatchResult:
        try:
            result = await self._claim.publish_batch(self.batch_size, self._publish_rows)
        except (SQLAlchemyError, OSError) as error:
            raise _PassFailed(RelayState.DATABASE_UNAVAILABLE, error) from error
        except Exception as error:
            raise _PassFailed(RelayState.FAILING, error) from error
        if result.error is not None:
            raise _PassFailed(RelayState.BROKER_UNAVAILABLE, result.error)
        return result

    async def _publish_rows(
        self, rows: Sequence[PendingEvent], deadline: float | None
    ) -> tuple[list[int], Exception | None]:
        confirmed: list[int] = []
        for row in rows:
            if deadline is not None and time.monotonic() > deadline:
                break
            headers = {**row.headers, MESSAGE_ID_HEADER: row.message_id}
            try:
                ack = await self.bus.publish(row.subject, row.payload, headers)
            except Exception as error:
                # Stop here: a later event of the same aggregate must not overtake it.
                return confirmed, error
            if ack.duplicate:
                self.duplicates += 1
                logger.debug("%s %s was stored before; not again", row.subject, row.message_id)
            confirmed.append(row.id)
        self.published += len(confirmed)
        return confirmed, None

    # -- housekeeping ----------------------------------------------------------------

    async def pending(self) -> int:
        """How many committed events wait to be published."""
        async with self.engine.connect() as connection:
            count = await connection.scalar(
                select(func.count()).select_from(OutboxRecord).where(OutboxRecord.sent_at.is_(None))
            )
        return int(count or 0)

    async def purge(self) -> int:
        """Delete the rows sent longer than ``retention`` ago; return how many."""
        if self.retention is None:
            return 0
        cutoff = datetime.now(UTC) - self.retention
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(OutboxRecord).where(
                    OutboxRecord.sent_at.is_not(None), OutboxRecord.sent_at <= cutoff
                )
            )
        purged = int(result.rowcount or 0)
        if purged:
            logger.info("outbox relay %s purged %d sent row(s)", self.name, purged)
        return purged

    async def _purge_when_due(self) -> None:
        now = time.monotonic()
        if self.retention is None or now < self._next_purge:
            return
        self._next_purge = now + self.purge_interval
        try:
            await self.purge()
        except (SQLAlchemyError, OSError) as error:
            logger.warning("outbox relay %s could not purge sent rows: %s", self.name, error)

    def __repr__(self) -> str:
        return f"OutboxRelay(name={self.name!r}, claim={self.claim!r}, state={self.state.value!r})"


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no detail"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _wait_for(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def _wait_for_either(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
