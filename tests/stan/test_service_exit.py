"""How a service leaves the cluster: SIGTERM through ``run_service``, or being replaced."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Self

import pytest

from common_events import Bus, Listener, Message, TicketCreatedEvent, run_service
from common_events.errors import ConnectionLost
from common_events.transports.stan import StanTransport, connect
from tests.fixtures.stan import StanServer

SERVICE = textwrap.dedent(
    """
    import asyncio, logging, sys

    from common_events import Listener, Message, TicketCreatedEvent, connect, run_service

    class TicketCreatedListener(Listener[TicketCreatedEvent]):
        queue_group = "orders-service"

        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
            await msg.ack()

    async def main() -> None:
        bus = await connect(sys.argv[1], cluster_id=sys.argv[2], client_id=sys.argv[3])
        await run_service(bus, TicketCreatedListener(bus))

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    asyncio.run(main())
    """
)


@pytest.fixture
async def service(stan_server: StanServer) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVICE, stan_server.url, stan_server.cluster_id, "orders-7f3a",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    yield process
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_sigterm_through_run_service_leaves_no_stale_client(
    stan_server: StanServer, service: asyncio.subprocess.Process
) -> None:
    assert service.stdout is not None
    async with asyncio.timeout(20):
        async for line in service.stdout:
            if b"service running" in line:
                break
    assert "orders-7f3a" in stan_server.client_ids()

    service.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(service.wait(), 10) == 0

    # Gone the moment the process is: the CloseRequest went out before it exited.
    assert "orders-7f3a" not in stan_server.client_ids()
    channel = stan_server.monitor("/streaming/channelsz?subs=1&channel=ticket:created")
    (durable,) = channel["subscriptions"]
    assert durable["is_durable"] and durable["is_offline"]  # ready for the next start


async def test_a_client_replaced_by_another_with_its_id_learns_it_is_lost(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    lost: asyncio.Queue[ConnectionLost] = asyncio.Queue()
    hung = await connect(
        stan_server.url,
        client_id="tickets-1",
        ping_interval=0.2,
        on_connection_lost=lost.put_nowait,
    )
    transports.append(hung)
    # Play a hung process: stop answering the server's heartbeats (the first internal
    # subscription is the heartbeat inbox). The server then lets a newcomer take the id.
    await hung.client._internal_subs[0].unsubscribe()

    newcomer = await connect(stan_server.url, client_id="tickets-1")
    transports.append(newcomer)

    error = await asyncio.wait_for(lost.get(), timeout=10)
    assert "replaced" in str(error)
    assert newcomer.is_connected and not hung.is_connected
    assert stan_server.client_ids() == {"tickets-1"}


async def test_run_service_stops_and_raises_when_the_server_forgets_the_client(
    stan_server: StanServer,
) -> None:
    started = asyncio.Event()

    class TicketCreatedListener(Listener[TicketCreatedEvent]):
        queue_group = "orders-service"

        async def listen(self) -> Self:
            await super().listen()
            started.set()
            return self

        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
            await msg.ack()

    transport = await connect(
        stan_server.url, ping_interval=0.2, ping_max_out=3, reconnect_time_wait=0.1
    )
    bus = Bus(transport)
    listener = TicketCreatedListener(bus)
    service = asyncio.create_task(run_service(bus, listener))
    async with asyncio.timeout(10):
        await started.wait()

    # A memory-store server that restarts has forgotten every client.
    stan_server.restart()
    with pytest.raises(ConnectionLost, match="no longer knows client"):
        async with asyncio.timeout(15):
            await service
    assert bus.closed and bus.lost is not None
    assert not listener.listening
