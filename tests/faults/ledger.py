"""Counting a fault scenario by event id.

Every publish is written down when it starts and when it settles (confirmed by the
broker, or failed with an error); every delivery with its broker sequence and delivery
count. From that: confirmed, delivered, lost (confirmed and never delivered: must be 0),
doubled (one event id stored twice, under two broker sequences), redelivered (one stored
message handled more than once), failed-but-stored, and how long publishing and
delivering took to come back after a moment of the fault (``mark``).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

REPORTS: list[Report] = []
"""Every report of this run, for the terminal summary (``conftest.py``)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    sequence: int
    delivery_count: int
    at: float


@dataclass(frozen=True, slots=True)
class Recovery:
    """How publishing and delivering came back after a moment ``since``."""

    since: str
    in_flight: int
    """Publishes started before the moment and not settled at it."""
    in_flight_confirmed: int
    in_flight_failed: int
    in_flight_settled_after: float | None
    """Seconds from the moment until the last of them settled; ``None``: one never did."""
    first_new_confirmed_after: float | None
    """Seconds from the moment until the first publish started after it was confirmed."""
    first_delivery_after: float | None

    @property
    def publishing(self) -> float | None:
        """Seconds until publishing was confirmed again: every publish caught by the
        fault settled and a new one was confirmed."""
        parts = [self.first_new_confirmed_after]
        if self.in_flight:
            parts.append(self.in_flight_settled_after)
        if any(part is None for part in parts):
            return None
        return max(part for part in parts if part is not None)


@dataclass(slots=True)
class Report:
    scenario: str
    confirmed: int
    failed: int
    delivered: int
    lost: int
    doubled: int
    redelivered: int
    failed_but_stored: int
    recoveries: list[Recovery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [
            f"{self.scenario}:",
            f"confirmed {self.confirmed}",
            f"failed {self.failed}",
            f"delivered {self.delivered}",
            f"lost {self.lost}",
            f"doubled {self.doubled}",
            f"redelivered {self.redelivered}",
            f"failed-but-stored {self.failed_but_stored}",
        ]
        for recovery in self.recoveries:
            parts.append(
                f"| after {recovery.since}: publishing {_seconds(recovery.publishing)}"
                f" (in flight {recovery.in_flight}: {recovery.in_flight_confirmed} confirmed,"
                f" {recovery.in_flight_failed} failed), delivering"
                f" {_seconds(recovery.first_delivery_after)}"
            )
        parts.extend(f"| {note}" for note in self.notes)
        return " ".join(parts)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}s"


class Ledger:
    """What one scenario published and delivered, by event id."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.started: dict[str, float] = {}
        self.confirmed: dict[str, float] = {}
        self.failed: dict[str, tuple[float, str]] = {}
        self.deliveries: list[Delivery] = []
        self.marks: dict[str, float] = {}
        self.notes: list[str] = []
        self.newest_confirmed_start = float("-inf")
        """When the most recently started of the confirmed publishes started."""
        self._changed = asyncio.Condition()

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def mark(self, moment: str, at: float | None = None) -> float:
        """Remember when ``moment`` (``"cut"``, ``"restore"``, ``"kill"``...) happened:
        now, or ``at`` (a time of ``now()``'s clock)."""
        self.marks[moment] = when = self.now() if at is None else at
        return when

    def note(self, text: str) -> None:
        self.notes.append(text)

    # -- writing down ----------------------------------------------------------------------

    async def publish_started(self, event_id: str) -> None:
        self.started[event_id] = self.now()
        await self._notify()

    async def publish_confirmed(self, event_id: str) -> None:
        self.confirmed[event_id] = self.now()
        self.newest_confirmed_start = max(self.newest_confirmed_start, self.started[event_id])
        await self._notify()

    async def publish_failed(self, event_id: str, error: BaseException) -> None:
        self.failed[event_id] = (self.now(), f"{type(error).__name__}: {error}")
        await self._notify()

    async def delivered(self, event_id: str, sequence: int, delivery_count: int) -> None:
        self.deliveries.append(Delivery(event_id, sequence, delivery_count, self.now()))
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- waiting ---------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait for ``predicate`` to hold; ``False`` if it did not within ``within`` s."""
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            return predicate()
        return True

    async def wait_delivered(self, count: int, within: float) -> bool:
        return await self.wait_until(lambda: len(self.delivered_ids()) >= count, within)

    async def wait_all_confirmed_delivered(self, within: float) -> bool:
        return await self.wait_until(lambda: not self.lost_ids(), within)

    async def wait_publishing_back(self, moment: str, within: float) -> bool:
        """Wait until every publish in flight at ``moment`` has settled and one started
        after it was confirmed."""
        at = self.marks[moment]
        caught = self.in_flight_at(at)

        def back() -> bool:
            return self.newest_confirmed_start >= at and all(
                event_id in self.confirmed or event_id in self.failed for event_id in caught
            )

        return await self.wait_until(back, within)

    def settled_at(self, event_id: str) -> float | None:
        if event_id in self.confirmed:
            return self.confirmed[event_id]
        if event_id in self.failed:
            return self.failed[event_id][0]
        return None

    def in_flight_at(self, at: float) -> list[str]:
        """Publishes started before ``at`` and not settled by then."""
        caught = []
        for event_id, began in self.started.items():
            settled = self.settled_at(event_id)
            if began < at and (settled is None or settled >= at):
                caught.append(event_id)
        return caught

    async def wait_confirmed_since(self, moment: str, count: int, within: float) -> bool:
        """Wait until ``count`` publishes started after ``moment`` were confirmed."""
        at = self.marks[moment]

        def enough() -> bool:
            return sum(1 for i in self.confirmed if self.started[i] >= at) >= count

        return await self.wait_until(enough, within)

    def unsettled_ids(self) -> set[str]:
        return set(self.started) - set(self.confirmed) - set(self.failed)

    # -- counting --------------------------------------------------------------------------

    def delivered_ids(self) -> set[str]:
        return {delivery.event_id for delivery in self.deliveries}

    def lost_ids(self) -> set[str]:
        return set(self.confirmed) - self.delivered_ids()

    def sequences(self) -> dict[str, set[int]]:
        by_id: dict[str, set[int]] = defaultdict(set)
        for delivery in self.deliveries:
            by_id[delivery.event_id].add(delivery.sequence)
        return by_id

    def doubled_ids(self) -> set[str]:
        """Events stored twice: delivered under more than one broker sequence."""
        return {event_id for event_id, seqs in self.sequences().items() if len(seqs) > 1}

    def redelivered_count(self) -> int:
        """Deliveries of a stored message after its first (same sequence)."""
        seen: set[tuple[str, int]] = set()
        again = 0
        for delivery in self.deliveries:
            key = (delivery.event_id, delivery.sequence)
            if key in seen:
                again += 1
            seen.add(key)
        return again

    def recovery(self, since: str) -> Recovery:
        at = self.marks[since]
        settled: dict[str, float] = {**self.confirmed}
        settled.update({event_id: when for event_id, (when, _) in self.failed.items()})
        in_flight = self.in_flight_at(at)
        unsettled = [event_id for event_id in in_flight if event_id not in settled]
        last_settled = max((settled[i] for i in in_flight if i in settled), default=at)
        new_confirmed = [
            when for event_id, when in self.confirmed.items() if self.started[event_id] >= at
        ]
        after = [delivery.at for delivery in self.deliveries if delivery.at >= at]
        return Recovery(
            since=since,
            in_flight=len(in_flight),
            in_flight_confirmed=sum(1 for i in in_flight if i in self.confirmed),
            in_flight_failed=sum(1 for i in in_flight if i in self.failed),
            in_flight_settled_after=None if unsettled else last_settled - at,
            first_new_confirmed_after=(min(new_confirmed) - at) if new_confirmed else None,
            first_delivery_after=(min(after) - at) if after else None,
        )

    def report(self, *recovery_since: str) -> Report:
        delivered = self.delivered_ids()
        report = Report(
            scenario=self.scenario,
            confirmed=len(self.confirmed),
            failed=len(self.failed),
            delivered=len(delivered),
            lost=len(self.lost_ids()),
            doubled=len(self.doubled_ids()),
            redelivered=self.redelivered_count(),
            failed_but_stored=len(set(self.failed) & delivered),
            recoveries=[self.recovery(since) for since in recovery_since],
            notes=list(self.notes),
        )
        REPORTS.append(report)
        print(f"\n[faults] {report.line()}")
        return report
