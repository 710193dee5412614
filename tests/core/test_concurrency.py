"""``Listener.concurrency``: up to N handlers at once, on every transport, and a drain
that waits for all of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from common_events import Bus, Listener, Message, Publisher, TicketCreatedEvent, connect
from common_events.testing.servers import EmbeddedNatsServer, StanServer

HANDLERS = 80
CONCURRENCY = 8


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class SlowListener(Listener[TicketCreatedEvent]):
    """Each handler takes 100 ms and records how many ran at the same time."""

    queue_group = "concurrency-test"
    concurrency = CONCURRENCY
    ack_wait = 30

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.running = 0
        self.most_at_once = 0
        self.handled: list[int] = []
        self.changed = asyncio.Condition()

    async def until(self, predicate: Callable[[], bool], within: float = 10) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)

    async def _changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await self._changed()
        try:
            await asyncio.sleep(0.1)
        finally:
            self.running -= 1
        self.handled.append(event.version)
        await msg.ack()
        await self._changed()


def events(count: int) -> list[TicketCreatedEvent]:
    return [
        TicketCreatedEvent(id=f"t{n}", version=n, title="show", price=10, user_id="u")
        for n in range(count)
    ]


@pytest.fixture(params=["memory", "jetstream", "stan"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        made = await connect("memory://")
    elif request.param == "jetstream":
        # The factory, not nats_server: an async fixture cannot be asked for from here.
        server: EmbeddedNatsServer = await request.getfixturevalue("nats_server_factory")()
        made = await connect(server.url)
    else:
        stan: StanServer = request.getfixturevalue("stan_server")
        made = await connect(stan.url, cluster_id=stan.cluster_id)
    async with made:
        yield made


async def test_n_handlers_run_at_once_and_never_more(bus: Bus) -> None:
    listener = await SlowListener(bus).listen()

    await TicketCreatedPublisher(bus).publish_many(events(HANDLERS))
    await listener.until(lambda: len(listener.handled) == HANDLERS, within=20)
    await listener.close()

    assert sorted(listener.handled) == list(range(HANDLERS))
    assert listener.most_at_once == CONCURRENCY


async def test_the_default_runs_one_handler_at_a_time() -> None:
    class OneAtATime(SlowListener):
        concurrency = 1

    async with await connect("memory://") as bus:
        listener = await OneAtATime(bus).listen()
        await TicketCreatedPublisher(bus).publish_many(events(5))
        await listener.until(lambda: len(listener.handled) == 5)
        await listener.close()

    assert listener.handled == [0, 1, 2, 3, 4]
    assert listener.most_at_once == 1


async def test_the_drain_waits_for_every_running_handler() -> None:
    async with await connect("memory://") as bus:
        listener = await SlowListener(bus).listen()
        await TicketCreatedPublisher(bus).publish_many(events(CONCURRENCY))
        await listener.until(lambda: listener.running == CONCURRENCY)

        await listener.close(drain_timeout=5)

        assert listener.running == 0
        assert sorted(listener.handled) == list(range(CONCURRENCY))
        assert listener.in_flight == 0


async def test_handlers_past_the_drain_timeout_are_abandoned_and_come_back() -> None:
    class Stuck(SlowListener):
        ack_wait = 1

        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
            self.running += 1
            await self._changed()
            await asyncio.Event().wait()

    async with await connect("memory://") as bus:
        stuck = await Stuck(bus).listen()
        await TicketCreatedPublisher(bus).publish_many(events(3))
        await stuck.until(lambda: stuck.running == 3)

        await stuck.close(drain_timeout=0.1)
        assert stuck.in_flight == 0

        again = await SlowListener(bus).listen()
        await again.until(lambda: len(again.handled) == 3)
        await again.close()
    assert sorted(again.handled) == [0, 1, 2]
