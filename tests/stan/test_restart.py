"""Durable state across a server crash: file store, SIGKILL, restart, nothing lost."""

from __future__ import annotations

import asyncio
import json

from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.stan import StanTransport, connect
from tests.fixtures.stan import ServerFactory

SUBJECT = "order:created"
TOTAL = 1000
GROUP = SubscriptionOptions(
    queue_group="payments-service",
    durable_name="payments-service",
    deliver_all_available=True,
    ack_wait=1,
    max_in_flight=64,
)


class Progress:
    """Which messages were processed (acked), and waiting for a number of them."""

    def __init__(self) -> None:
        self.processed: set[int] = set()
        self.deliveries = 0
        self._changed = asyncio.Condition()

    async def handle(self, message: TransportMessage) -> None:
        self.deliveries += 1
        n = json.loads(message.data)["n"]
        await message.ack()
        async with self._changed:
            self.processed.add(n)
            self._changed.notify_all()

    async def wait_for(self, count: int, within: float) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.processed) >= count)


async def test_durable_queue_group_resumes_after_sigkill_and_restart(
    stan_server_factory: ServerFactory, transports: list[StanTransport]
) -> None:
    server = stan_server_factory(file_store=True)
    publisher = await connect(server.url, reconnect_time_wait=0.1)
    transports.append(publisher)
    await asyncio.gather(
        *(publisher.publish(SUBJECT, json.dumps({"n": n}).encode()) for n in range(TOTAL))
    )

    progress = Progress()
    consumer = await connect(server.url, reconnect_time_wait=0.1)
    transports.append(consumer)
    await consumer.subscribe(SUBJECT, progress.handle, GROUP)
    await progress.wait_for(300, within=10)

    server.kill()
    server.start()  # same ports, same store directory

    # The file store kept the client and its durable subscription, so nats-py's
    # reconnect is all it takes for the same consumer to carry on.
    await progress.wait_for(600, within=15)
    assert consumer.is_connected

    # A new process of the service (new client id) joins the durable group after the
    # old one leaves, and finishes the rest.
    await consumer.close()
    successor = await connect(server.url)
    transports.append(successor)
    await successor.subscribe(SUBJECT, progress.handle, GROUP)
    await progress.wait_for(TOTAL, within=15)

    assert progress.processed == set(range(TOTAL))
    # At least once: a few acks may have died with the server, never a message.
    assert progress.deliveries >= TOTAL
