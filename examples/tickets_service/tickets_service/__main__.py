"""``python -m tickets_service``: run the tickets service until stopped.

Configuration comes from the environment, as in the reference deployment:
``COMMON_EVENTS_URL`` (``stan://nats-srv:4222?cluster_id=ticketing`` style, or
``nats://`` / ``memory://``) and ``TICKETS_DB`` (the SQLite file).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from common_events import connect, run_service
from common_events.outbox import Outbox, OutboxRelay
from sqlalchemy.ext.asyncio import async_sessionmaker

from tickets_service.events import OrderCancelledListener, OrderCreatedListener
from tickets_service.service import Tickets
from tickets_service.store import create_schema, open_database


async def main(
    url: str | None = None,
    database: str | None = None,
    *,
    stop: asyncio.Event | None = None,
    **connect_options: Any,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set), then shut down cleanly.

    The outbox relay is a companion of the service: it starts before the listeners
    subscribe (publishing first what was committed while the service was down) and
    stops after they drained, before the connection closes.

    ``connect_options`` go to ``connect()`` (``cluster_id=``, or ``broker=`` to share an
    in-process broker with a test).
    """
    engine = open_database(database or os.environ.get("TICKETS_DB", "tickets.sqlite3"))
    try:
        await create_schema(engine)
        bus = await connect(url, **connect_options)  # url None: $COMMON_EVENTS_URL
        outbox = Outbox()
        tickets = Tickets(async_sessionmaker(engine, expire_on_commit=False), outbox)
        await run_service(
            bus,
            OrderCreatedListener(bus, tickets),
            OrderCancelledListener(bus, tickets),
            stop=stop,
            companions=[OutboxRelay(bus, engine, outbox=outbox)],
        )
    finally:
        await engine.dispose()


def run() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main())


if __name__ == "__main__":
    run()
