"""``python -m tickets_service``: run the tickets service's listeners until stopped.

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

from tickets_service.events import OrderCancelledListener, OrderCreatedListener
from tickets_service.service import Tickets
from tickets_service.store import TicketStore


async def main(
    url: str | None = None,
    database: str | None = None,
    *,
    stop: asyncio.Event | None = None,
    **connect_options: Any,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set), then shut down cleanly.

    ``connect_options`` go to ``connect()`` (``cluster_id=``, or ``broker=`` to share an
    in-process broker with a test).
    """
    store = TicketStore(database or os.environ.get("TICKETS_DB", "tickets.sqlite3"))
    try:
        bus = await connect(url, **connect_options)  # url None: $COMMON_EVENTS_URL
        tickets = Tickets(store, bus)
        await run_service(
            bus,
            OrderCreatedListener(bus, tickets),
            OrderCancelledListener(bus, tickets),
            stop=stop,
        )
    finally:
        store.close()


def run() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main())


if __name__ == "__main__":
    run()
