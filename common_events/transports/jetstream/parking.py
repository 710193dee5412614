"""Messages parked on a consumer, and the consumer window they widen.

A message whose dead-letter record cannot be stored (the user may not publish on the
dead-letter subject, no stream stores it) is handed back with a delay and never
acknowledged: acknowledging it would lose it. nats-server counts a message waiting out a
negative-ack delay against the consumer's ``max_ack_pending``, so ``max_in_flight`` such
messages would stop the consumer, and every message behind them with it. A parked
message therefore widens the consumer's window by one: ``max_ack_pending`` is the
listener's ``max_in_flight`` plus the number of messages parked, up to ``MAX_PARKED``.

The parked stream sequences live in the consumer's own metadata (``PARKED_KEY``), so every
member of a queue group (each its own process) sees and keeps them, and they survive a
restart: a listener that binds to the consumer again keeps the window wide.

The JetStream API has no compare-and-set for consumer updates: two members writing at once
can each undo the other's change. So the set is written idempotently and re-asserted: a
member writes again, every ``resync_interval`` while it knows of parked messages, what it
parked and what it settled; sequences at or below the consumer's ack floor are settled
for certain and anyone drops them. A race leaves the window one too narrow for a few
seconds, or one too wide while a member still re-asserts a message another member has
settled (until its entry expires: ``park``); it never acknowledges or loses a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

PARKED_KEY = "common-events-parked"
"""Consumer metadata key: the parked stream sequences, comma-separated, ascending."""

MAX_PARKED = 1000
"""At most this many parked messages widen a consumer's window (about 11 KB of metadata);
past it, a parked message holds its slot until its dead-letter record is stored."""

SETTLED_MEMORY = 60.0
"""Seconds a member keeps re-asserting that a sequence it settled is no longer parked."""


def parse_parked(metadata: Mapping[str, str] | None) -> frozenset[int]:
    """The parked sequences written in a consumer's metadata; nonsense is ignored."""
    text = (metadata or {}).get(PARKED_KEY, "")
    parked: set[int] = set()
    for token in text.split(","):
        token = token.strip()
        if token.isdigit():
            parked.add(int(token))
    return frozenset(parked)


def with_parked(metadata: Mapping[str, str] | None, parked: Iterable[int]) -> dict[str, str]:
    """``metadata`` with the parked set replaced (the key is left out when empty)."""
    result = {key: value for key, value in (metadata or {}).items() if key != PARKED_KEY}
    ordered = sorted(parked)
    if ordered:
        result[PARKED_KEY] = ",".join(str(sequence) for sequence in ordered)
    return result


def window(base: int, parked: int) -> int:
    """The consumer's ``max_ack_pending`` for a listener window of ``base``."""
    return base + min(parked, MAX_PARKED)


def merge_parked(
    written: Iterable[int],
    *,
    parked_here: Iterable[int],
    settled_here: Iterable[int],
    ack_floor: int,
) -> frozenset[int]:
    """What one member writes: the set as written, with what it parked and without what
    it settled, less everything at or below the ack floor (acknowledged for certain)."""
    settled = set(settled_here)
    merged = (set(written) | set(parked_here)) - settled
    return frozenset(sequence for sequence in merged if sequence > ack_floor)


@dataclass(frozen=True, slots=True)
class ConsumerState:
    """What a sync reads of the consumer."""

    parked: frozenset[int]
    max_ack_pending: int
    ack_floor: int


class ParkingAdmin(Protocol):
    """What the parking lot asks of the administration (``StreamAdmin``)."""

    async def read_parked(self, name: str) -> ConsumerState: ...

    async def write_parked(
        self, name: str, parked: frozenset[int], max_ack_pending: int
    ) -> None: ...


class ParkingLot:
    """The parked messages of one subscription, and the syncs that keep the window wide.

    ``park`` and ``settled`` only record and wake the sync task: a delivery never waits
    for the JetStream API.
    """

    def __init__(
        self,
        admin: ParkingAdmin,
        *,
        name: str,
        base_window: int,
        ack_wait: float,
        known: frozenset[int] = frozenset(),
        resync_interval: float = 2.0,
    ) -> None:
        self._admin = admin
        self._base = base_window
        self._ack_wait = ack_wait
        self._name = name
        self._resync_interval = resync_interval
        self._parked_here: dict[int, float] = {}
        """Parked by this member: sequence -> when it stops being re-asserted."""
        self._settled_here: dict[int, float] = {}
        """Settled by this member: sequence -> when it stops being re-asserted."""
        self.known: frozenset[int] = known
        """The parked set as last read or written; acks of these are reported."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        if known:
            self._start()

    @property
    def watching(self) -> bool:
        """Whether any parked message is known: only then does an ack report itself."""
        return bool(self.known or self._parked_here)

    def park(self, sequence: int, delay: float) -> None:
        """Record ``sequence`` as parked; it is re-asserted until it has been away for
        three of its redelivery delays (then another member holds or has settled it)."""
        if self._closed:
            return
        self._settled_here.pop(sequence, None)
        self._parked_here[sequence] = time.monotonic() + 3 * max(delay, self._ack_wait) + 10
        self._start()
        self._wake.set()

    def settled(self, sequence: int) -> None:
        """An acknowledged redelivery: no longer parked, if it was."""
        if self._closed:
            return
        if sequence in self._parked_here or sequence in self.known:
            self._parked_here.pop(sequence, None)
            self._settled_here[sequence] = time.monotonic() + SETTLED_MEMORY
            self._start()
            self._wake.set()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"common-events parking {self._name}"
            )

    async def _run(self) -> None:
        failing = False
        while not self._closed:
            self._wake.clear()
            try:
                await self.sync()
            except Exception as error:
                # Tried again at the next interval; meanwhile the window stays as it is.
                # Said at WARNING once per run of failures (a user who may not update
                # consumers would otherwise read it every interval), then at DEBUG.
                logger.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "consumer %s: could not update its parked messages (the window stays "
                    "as it is; trying again every %gs): %s",
                    self._name,
                    self._resync_interval,
                    error,
                )
                failing = True
            else:
                failing = False
            if not (self._parked_here or self._settled_here or self.known):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._resync_interval)

    async def sync(self) -> None:
        """Read the consumer, merge what this member knows, write it back if it differs."""
        now = time.monotonic()
        for table in (self._parked_here, self._settled_here):
            for sequence in [s for s, until in table.items() if until <= now]:
                del table[sequence]
        state = await self._admin.read_parked(self._name)
        merged = merge_parked(
            state.parked,
            parked_here=self._parked_here,
            settled_here=self._settled_here,
            ack_floor=state.ack_floor,
        )
        if len(merged) > MAX_PARKED:
            # The metadata stays small; past the bound a parked message holds its slot.
            merged = frozenset(sorted(merged)[:MAX_PARKED])
        for sequence in [s for s in self._parked_here if s <= state.ack_floor]:
            del self._parked_here[sequence]
        wanted = window(self._base, len(merged))
        if merged != state.parked or wanted != state.max_ack_pending:
            await self._admin.write_parked(self._name, merged, wanted)
            if wanted > state.max_ack_pending:
                logger.warning(
                    "consumer %s: %d message(s) wait for their dead-letter record to be "
                    "stored; max_ack_pending %d -> %d so that other messages keep flowing",
                    self._name,
                    len(merged),
                    state.max_ack_pending,
                    wanted,
                )
            elif wanted < state.max_ack_pending:
                logger.info(
                    "consumer %s: %d message(s) still wait for their dead-letter record; "
                    "max_ack_pending %d -> %d",
                    self._name,
                    len(merged),
                    state.max_ack_pending,
                    wanted,
                )
        self.known = merged

    async def close(self, within: float) -> None:
        """Stop syncing; what was parked stays written for the next member.

        What this member settled is written once more (within ``within`` seconds), so that a
        service stopping right after a dead-letter record was stored narrows the window.
        """
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._settled_here:
            try:
                await asyncio.wait_for(self.sync(), within)
            except Exception as error:
                logger.debug("consumer %s: last parked update not written: %s", self._name, error)
