"""A handler slower than ``ack_wait``: held off redelivery on memory and JetStream (the
listener tells the broker it is still working), and a warning on NATS Streaming, which
cannot be told."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from common_events import Bus, Listener, Message, Publisher, TicketCreatedEvent, connect
from common_events.testing.servers import EmbeddedNatsServer, StanServer

ACK_WAIT = 1.0
SLOW = 3 * ACK_WAIT


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class SlowFirst(Listener[TicketCreatedEvent]):
    """The first event's handler takes three times ``ack_wait``; the others are quick."""

    queue_group = "slow-handlers"
    ack_wait = ACK_WAIT

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.deliveries: list[tuple[int, int]] = []
        self.changed = asyncio.Condition()

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        self.deliveries.append((event.version, msg.delivery_count))
        if event.version == 1 and msg.delivery_count == 1:
            await asyncio.sleep(SLOW)
        await msg.ack()
        async with self.changed:
            self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool], within: float = 15) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)


def ticket(version: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"t{version}", version=version, title="x", price=1, user_id="u")


@pytest.fixture(params=["memory", "jetstream"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        made = await connect("memory://")
    else:
        server: EmbeddedNatsServer = await request.getfixturevalue("nats_server_factory")()
        made = await connect(server.url)
    async with made:
        yield made


async def test_a_handler_taking_three_times_ack_wait_is_delivered_once(bus: Bus) -> None:
    listener = await SlowFirst(bus).listen()
    publisher = TicketCreatedPublisher(bus)

    await publisher.publish(ticket(1))
    await listener.until(lambda: len(listener.deliveries) == 1)
    # Published once the slow one is done: a redelivery of the slow one, had there been
    # one while it ran, would be handed over before this (one handler at a time, in
    # order), so its arrival closes the window.
    await asyncio.wait_for(listener.wait_idle(), 15)
    await publisher.publish(ticket(2))
    await listener.until(lambda: any(version == 2 for version, _ in listener.deliveries))
    await listener.close()

    assert listener.deliveries == [(1, 1), (2, 1)]


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "ack_wait" in record.getMessage():
            self.records.append(record)
            self.seen.set()


async def test_on_nats_streaming_a_handler_outlasting_ack_wait_warns_once_per_listener(
    stan_server: StanServer,
) -> None:
    warnings = Warnings()
    logger = logging.getLogger("common_events.core.listener")
    logger.addHandler(warnings)
    try:
        async with await connect(stan_server.url, cluster_id=stan_server.cluster_id) as bus:
            listener = await SlowFirst(bus).listen()
            await TicketCreatedPublisher(bus).publish(ticket(1))
            async with asyncio.timeout(10):
                await warnings.seen.wait()
            # The server cannot be told: the message comes back while the first handler
            # still runs, and is handled again once it returns.
            await listener.until(lambda: (1, 2) in listener.deliveries)
            await listener.close()
    finally:
        logger.removeHandler(warnings)

    (record,) = warnings.records
    text = record.getMessage()
    assert "longer than ack_wait = 1s" in text
    assert "Raise SlowFirst.ack_wait above the longest a handler takes" in text
    assert record.listener == "SlowFirst" and record.sequence == 1  # type: ignore[attr-defined]
