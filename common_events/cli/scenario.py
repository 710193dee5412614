"""The ticketing scenario that ``common-events demo`` runs against any bus.

Six steps, each checked: a publisher, a queue group splitting work, a durable listener
catching up, a failing handler retried, an out-of-order update held back, and a bad
payload dead-lettered. What became of each delivery is read from the outcome
``Listener.handle_delivery`` returns, never from logs. Names carry a run id, so the
scenario also runs against a long-lived server that already holds other runs' events
and durables.

One piece of over 400 lines on purpose: it is the story the demo tells, read top to
bottom; its six steps share the scenario's services and run id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from common_events.core import (
    Acked,
    Bus,
    DeadLettered,
    LeftForRedelivery,
    Listener,
    Message,
    NotAcked,
    NotSettled,
    Outcome,
    OutOfOrderLater,
    PublishAck,
    Publisher,
    RetryLater,
    TransportMessage,
)
from common_events.errors import OutOfOrder
from common_events.events import (
    Event,
    OrderCreatedEvent,
    OrderStatus,
    OrderTicket,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)

E = TypeVar("E", bound=Event)

Narrate = Callable[[str], None]
Connect = Callable[[], Awaitable[Bus]]

STEP_TIMEOUT = 20.0


@dataclass
class StepResult:
    number: int
    title: str
    held: bool
    detail: str


@dataclass
class ScenarioReport:
    steps: list[StepResult] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return len(self.steps) == 6 and all(step.held for step in self.steps)

    @property
    def failed(self) -> list[StepResult]:
        return [step for step in self.steps if not step.held]


class _Signal:
    """Wakes waiters whenever a listener records something."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()

    async def notify(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> bool:
        try:
            async with asyncio.timeout(STEP_TIMEOUT), self._condition:
                await self._condition.wait_for(predicate)
        except TimeoutError:
            return False
        return True


def describe(outcome: Outcome) -> str:
    """An outcome as the narration says it."""
    if isinstance(outcome, Acked):
        return "acked"
    if isinstance(outcome, RetryLater):
        return (
            f"not acked, redelivery asked in {outcome.delay:g}s "
            f"({type(outcome.error).__name__}: {outcome.error})"
        )
    if isinstance(outcome, OutOfOrderLater):
        return f"out of order, redelivery asked in {outcome.delay:g}s"
    if isinstance(outcome, DeadLettered):
        return f"sent to {outcome.subject} ({outcome.record.reason.value}) and acked"
    if isinstance(outcome, NotAcked):
        return "not acked; it comes back after ack_wait"
    if isinstance(outcome, LeftForRedelivery):
        return "left for redelivery (the listener is stopping)"
    if isinstance(outcome, NotSettled):
        return f"not settled ({type(outcome.error).__name__}: {outcome.error})"
    return repr(outcome)


class ObservedListener(Listener[E]):
    """A listener whose every outcome the scenario sees (those of its own run)."""

    def __init__(self, bus: Bus, scenario: Scenario) -> None:
        super().__init__(bus)
        self.scenario = scenario

    async def handle_delivery(self, raw: TransportMessage) -> Outcome:
        outcome = await super().handle_delivery(raw)
        if self.scenario.run_id.encode() in raw.data:
            await self.scenario.observe(raw.subject, outcome)
        return outcome


def _ack_text(ack: PublishAck) -> str:
    if ack.sequence is not None:
        return f"stored as #{ack.sequence}"
    return f"acknowledged (guid {ack.guid})"


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class TicketUpdatedPublisher(Publisher[TicketUpdatedEvent]):
    pass


class OrderCreatedPublisher(Publisher[OrderCreatedEvent]):
    pass


class Scenario:
    def __init__(self, connect: Connect, narrate: Narrate) -> None:
        self.connect = connect
        self.say = narrate
        self.run_id = uuid.uuid4().hex[:8]
        self.signal = _Signal()
        self.report = ScenarioReport()
        self._buses: list[Bus] = []
        self._listeners: list[Listener[Any]] = []
        self.orders_processed: set[str] = set()
        self.outcomes: list[tuple[str, Outcome]] = []

    async def observe(self, subject: str, outcome: Outcome) -> None:
        self.outcomes.append((subject, outcome))
        if not isinstance(outcome, Acked):
            self.say(f"   outcome on {subject}: {describe(outcome)}")
        await self.signal.notify()

    def ticket_id(self, n: int) -> str:
        return f"{self.run_id}-ticket-{n}"

    def mine(self, event_id: str) -> bool:
        return event_id.startswith(self.run_id)

    async def bus(self) -> Bus:
        bus = await self.connect()
        self._buses.append(bus)
        return bus

    async def start(self, listener: Listener[Any]) -> Listener[Any]:
        self._listeners.append(listener)
        return await listener.listen()

    def record(self, number: int, title: str, held: bool, detail: str) -> None:
        self.report.steps.append(StepResult(number, title, held, detail))
        self.say(f"   {'ok' if held else 'FAILED'}: {detail}")

    async def run(self) -> ScenarioReport:
        try:
            tickets = await self.bus()
            await self.step_publish(tickets)
            await self.step_queue_group(tickets)
            await self.step_durable_catch_up(tickets)
            await self.step_retry(tickets)
            await self.step_out_of_order(tickets)
            await self.step_dead_letter(tickets)
        finally:
            for listener in self._listeners:
                await listener.unsubscribe(drain_timeout=2.0)
            for bus in self._buses:
                await bus.close()
        return self.report

    # 1 -------------------------------------------------------------------------------
    async def step_publish(self, bus: Bus) -> None:
        self.say("1. The tickets service publishes TicketCreated and TicketUpdated events")
        created = TicketCreatedPublisher(bus)
        updated = TicketUpdatedPublisher(bus)
        acks = []
        for n in range(1, 5):
            event = TicketCreatedEvent(
                id=self.ticket_id(n), version=0, title=f"Concert #{n}", price=20 * n, user_id="u1"
            )
            ack = await created.publish(event)
            acks.append(ack)
            self.say(f"   published {event.subject.value} {event.id} -> {_ack_text(ack)}")
        ack = await updated.publish(
            TicketUpdatedEvent(
                id=self.ticket_id(1), version=1, title="Concert #1", price=25, user_id="u1"
            )
        )
        acks.append(ack)
        self.say(f"   published ticket:updated {self.ticket_id(1)} v1 -> {_ack_text(ack)}")
        self.record(1, "publish", len(acks) == 5, f"{len(acks)} events confirmed by the broker")

    # 2 -------------------------------------------------------------------------------
    async def step_queue_group(self, bus: Bus) -> None:
        self.say("2. Two orders-service instances in one queue group split TicketCreated")
        processed: dict[str, list[str]] = {"orders-a": [], "orders-b": []}
        scenario = self

        class TicketCreatedListener(ObservedListener[TicketCreatedEvent]):
            queue_group = f"orders-service-{self.run_id}"
            ack_wait = 2.0
            max_in_flight = 2

            def __init__(self, bus: Bus, instance: str) -> None:
                super().__init__(bus, scenario)
                self.instance = instance

            async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
                if scenario.mine(event.id):
                    processed[self.instance].append(event.id)
                    scenario.orders_processed.add(event.id)
                    scenario.say(f"   {self.instance} processed {event.id}")
                await msg.ack()
                await scenario.signal.notify()

        await self.start(TicketCreatedListener(await self.bus(), "orders-a"))
        await self.start(TicketCreatedListener(await self.bus(), "orders-b"))
        for n in range(5, 9):
            await TicketCreatedPublisher(bus).publish(
                TicketCreatedEvent(
                    id=self.ticket_id(n), version=0, title=f"Play #{n}", price=15, user_id="u2"
                )
            )
        expected = {self.ticket_id(n) for n in range(1, 9)}

        def all_seen() -> bool:
            return expected <= set(processed["orders-a"] + processed["orders-b"])

        arrived = await self.signal.wait_for(all_seen)
        everything = processed["orders-a"] + processed["orders-b"]
        once = len(everything) == len(set(everything))
        detail = (
            f"{len(processed['orders-a'])} + {len(processed['orders-b'])} of "
            f"{len(expected)} tickets, {'none' if once else 'some'} processed twice"
        )
        self.record(2, "queue group", arrived and once, detail)

    # 3 -------------------------------------------------------------------------------
    async def step_durable_catch_up(self, bus: Bus) -> None:
        self.say("3. A durable listener stops, events are published, it comes back")
        seen: list[tuple[str, int]] = []
        scenario = self

        class SearchIndexListener(Listener[TicketUpdatedEvent]):
            queue_group = f"search-service-{self.run_id}"

            async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
                if scenario.mine(event.id):
                    seen.append((event.id, event.version))
                    scenario.say(f"   search-service indexed {event.id} v{event.version}")
                await msg.ack()
                await scenario.signal.notify()

        listener = SearchIndexListener(await self.bus())
        await listener.listen()
        first = await self.signal.wait_for(lambda: (self.ticket_id(1), 1) in seen)
        await listener.close()
        self.say("   search-service stopped (its durable subscription stays)")
        updated = TicketUpdatedPublisher(bus)
        for n in (2, 3):
            await updated.publish(
                TicketUpdatedEvent(
                    id=self.ticket_id(n), version=1, title=f"Concert #{n}", price=99, user_id="u1"
                )
            )
            self.say(f"   published ticket:updated {self.ticket_id(n)} v1 while it was away")
        comeback = SearchIndexListener(await self.bus())
        await self.start(comeback)
        self.say("   search-service is back")
        wanted = {(self.ticket_id(2), 1), (self.ticket_id(3), 1)}
        caught_up = await self.signal.wait_for(lambda: wanted <= set(seen))
        replayed = seen.count((self.ticket_id(1), 1)) > 1
        self.record(
            3,
            "durable catch-up",
            first and caught_up and not replayed,
            f"caught up on {len(wanted & set(seen))} of 2 missed events, "
            f"{'replayed' if replayed else 'no replay of'} what it had acknowledged",
        )

    # 4 -------------------------------------------------------------------------------
    async def step_retry(self, bus: Bus) -> None:
        self.say("4. A handler fails once; the event is redelivered and processed")
        attempts: list[int] = []
        done: list[str] = []
        scenario = self
        order_id = f"{self.run_id}-order-1"

        class ExpirationOrderCreatedListener(ObservedListener[OrderCreatedEvent]):
            queue_group = f"expiration-service-{self.run_id}"
            ack_wait = 1.0
            retry_delay = 0.2

            async def on_message(self, event: OrderCreatedEvent, msg: Message) -> None:
                if scenario.mine(event.id):
                    attempts.append(msg.delivery_count)
                    if msg.delivery_count == 1:
                        scenario.say("   expiration-service: the job queue is down (fails)")
                        raise ConnectionError("job queue unavailable")
                    scenario.say(
                        f"   expiration-service scheduled {event.id} on delivery "
                        f"{msg.delivery_count} (redelivered={msg.redelivered})"
                    )
                    done.append(event.id)
                await msg.ack()
                await scenario.signal.notify()

        await self.start(ExpirationOrderCreatedListener(await self.bus(), self))
        await OrderCreatedPublisher(bus).publish(
            OrderCreatedEvent(
                id=order_id,
                version=0,
                status=OrderStatus.CREATED,
                user_id="u3",
                expires_at=datetime.now(UTC) + timedelta(minutes=15),
                ticket=OrderTicket(id=self.ticket_id(4), price=80),
            )
        )
        subject = OrderCreatedEvent.subject.value
        processed = await self.signal.wait_for(
            lambda: order_id in done and _count(self.outcomes_on(subject), Acked) >= 1
        )
        outcomes = self.outcomes_on(subject)
        retried = any(isinstance(outcome, RetryLater) for outcome in outcomes)
        self.record(
            4,
            "retry after failure",
            processed and retried and attempts[:2] == [1, 2],
            f"deliveries {attempts}, outcomes {_names(outcomes)}",
        )

    # 5 -------------------------------------------------------------------------------
    async def step_out_of_order(self, bus: Bus) -> None:
        self.say("5. Version 2 of an update arrives before version 1")
        versions: dict[str, int] = {self.ticket_id(4): 0}
        applied: list[int] = []
        held_back: list[int] = []
        scenario = self

        class OrdersTicketUpdatedListener(ObservedListener[TicketUpdatedEvent]):
            queue_group = f"orders-service-{self.run_id}"
            ack_wait = 1.0
            retry_delay = 0.2

            async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
                if event.id in versions:
                    if versions[event.id] != event.previous_version:
                        held_back.append(event.version)
                        scenario.say(
                            f"   orders-service has v{versions[event.id]}, got "
                            f"v{event.version}: out of order, wait"
                        )
                        raise OutOfOrder(f"{event.id} v{event.version} needs v{event.version - 1}")
                    versions[event.id] = event.version
                    applied.append(event.version)
                    scenario.say(f"   orders-service applied {event.id} v{event.version}")
                await msg.ack()
                await scenario.signal.notify()

        await self.start(OrdersTicketUpdatedListener(await self.bus(), self))
        updated = TicketUpdatedPublisher(bus)
        for version in (2, 1):
            await updated.publish(
                TicketUpdatedEvent(
                    id=self.ticket_id(4), version=version, title="Opera", price=80 + version,
                    user_id="u1",
                )
            )
            self.say(f"   published ticket:updated {self.ticket_id(4)} v{version}")
        subject = TicketUpdatedEvent.subject.value
        both = await self.signal.wait_for(lambda: applied[-1:] == [2])
        # v2's first deliveries were answered before v1 was even applied.
        held = _count(self.outcomes_on(subject), OutOfOrderLater)
        self.record(
            5,
            "version order",
            both and applied == [1, 2] and 2 in held_back and held >= 1,
            f"applied in order {applied}; v2 held back {held} time(s)",
        )

    # 6 -------------------------------------------------------------------------------
    async def step_dead_letter(self, bus: Bus) -> None:
        self.say("6. An invalid payload goes to the dead-letter subject; the listener goes on")
        bad = f'{{"id":"{self.run_id}-bad","version":0,"title":"x","price":"free"}}'
        await bus.publish(TicketCreatedEvent.subject.value, bad.encode())
        self.say(f"   published an invalid ticket:created: {bad}")
        after = TicketCreatedEvent(
            id=self.ticket_id(9), version=0, title="After the bad one", price=5, user_id="u2"
        )
        await TicketCreatedPublisher(bus).publish(after)
        # The queue group of step 2 is still listening: one of its members gets both.
        subject = TicketCreatedEvent.subject.value
        dead = await self.signal.wait_for(
            lambda: _count(self.outcomes_on(subject), DeadLettered) >= 1
        )
        went_on = await self.signal.wait_for(lambda: after.id in self.orders_processed)
        letters = [o for o in self.outcomes_on(subject) if isinstance(o, DeadLettered)]
        detail = (
            f"dead-lettered ({letters[0].record.reason.value}) and the next event was processed"
            if dead and went_on
            else f"dead letters: {len(letters)}, next event processed: {went_on}"
        )
        if letters:
            reason = " ".join(letters[0].record.error.split())
            self.say(f"   {letters[0].subject}: {reason[:90]}…")
        self.record(6, "dead letter", dead and went_on, detail)

    def outcomes_on(self, subject: str) -> list[Outcome]:
        """This run's outcomes on ``subject`` so far, oldest first."""
        return [outcome for on, outcome in self.outcomes if on == subject]


def _count(outcomes: Iterable[Outcome], kind: type[Outcome]) -> int:
    return sum(1 for outcome in outcomes if isinstance(outcome, kind))


def _names(outcomes: Iterable[Outcome]) -> str:
    return " then ".join(type(outcome).__name__ for outcome in outcomes) or "none"
