"""A server restart on its file store: a durable listener resumes and nothing is lost."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from common_events import connect
from common_events.testing.servers import EmbeddedNatsServer
from tests.fixtures.jetstream import nats_server_binary
from tests.jetstream.scenario import (
    ProcessedLog,
    RecordingTicketListener,
    TicketCreatedPublisher,
    ticket,
)


@pytest.mark.parametrize("how", ["graceful", "sigkill"])
async def test_a_durable_listener_resumes_after_a_server_restart(tmp_path: Path, how: str) -> None:
    server = EmbeddedNatsServer(store_dir=tmp_path / "store", binary=nats_server_binary())
    processed = ProcessedLog()
    try:
        await server.start()
        async with AsyncExitStack() as stack:
            publisher_bus = await connect(server.url, publish_timeout=20.0)
            stack.push_async_callback(publisher_bus.close)
            publisher = TicketCreatedPublisher(publisher_bus)

            # Before the restart: the listener runs and processes a first batch.
            async with await connect(server.url) as listener_bus:
                listener = await RecordingTicketListener(listener_bus, processed).listen()
                for n in range(50):
                    await publisher.publish(ticket(n))
                await processed.wait_for_ids({ticket(n).id for n in range(50)}, timeout=15)
                await listener.close()

            # While the listener is away a second batch is stored; then the server
            # restarts on the same store and ports, and the publisher reconnects by itself.
            for n in range(50, 100):
                await publisher.publish(ticket(n))
            if how == "graceful":
                await server.stop()
            else:
                server.kill()
            await server.start()
            for n in range(100, 150):
                await publisher.publish(ticket(n))

            # The durable resumes where it left off: the second and third batches arrive.
            listener_bus = await connect(server.url)
            stack.push_async_callback(listener_bus.close)
            await RecordingTicketListener(listener_bus, processed).listen()
            expected = {ticket(n).id for n in range(150)}
            await processed.wait_for_ids(expected, timeout=20)

        assert processed.ids() == expected
        if how == "graceful":
            # Nothing of the first batch came back unless the listener could see it was
            # a redelivery (an ack may still be in flight when a listener closes).
            assert processed.unexplained_duplicates() == []
        # After a crash a single server may replay what was acknowledged in its last
        # moment: it writes consumer state behind the acks (a cluster replicates it).
        # At-least-once still holds: nothing is lost, and handlers are idempotent.
    finally:
        server.cleanup()
